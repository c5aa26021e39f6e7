"""Tokens and roles: who may change what.

- `operator`: the status of the rooms named on the token;
- `moderator`: announcements, and the status of every room;
- `admin`: everything, including schedule imports;
- `screen`: nothing in the API; on the feed's websocket it names one screen of the venue (its
  token's name), which the console lists and whose receipts count (issue 18: a screen's name is
  a claim only such a token makes). `--room` says where it stands, for the people who walk there.
Viewers need no token: reading the feed is anonymous.

A token reads `feed_<id>_<secret>`. Only a SHA-256 of the secret is stored (the secret is 256
random bits, so a fast hash is enough); the comparison takes constant time; tokens are never
logged, only their ids.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from feed import keys
from feed.bus import Bus
from feed.errors import Forbidden, InvalidMessage, NotFound, Unauthorized

PREFIX = "feed"
MAX_NAME = 100


class Role(StrEnum):
    OPERATOR = "operator"
    MODERATOR = "moderator"
    ADMIN = "admin"
    SCREEN = "screen"


STAFF = (Role.OPERATOR, Role.MODERATOR, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    role: Role
    rooms: tuple[str, ...] = ()
    name: str = ""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role.value,
            "rooms": list(self.rooms),
            "name": self.name,
            "created": self.created,
        }

    def check_staff(self) -> None:
        """Screen tokens sit in kiosks' addresses: they read nothing of the API."""
        if self.role not in STAFF:
            raise Forbidden("a screen token only names a screen on the feed; use a staff token")

    def check_status(self, room: str) -> None:
        self.check_staff()
        if self.role == Role.OPERATOR and room not in self.rooms:
            raise Forbidden(f"this token covers the rooms {', '.join(self.rooms)}, not {room!r}")

    def check_announce(self) -> None:
        self.check_staff()
        if self.role == Role.OPERATOR:
            raise Forbidden("announcements need a moderator or admin token")

    def check_admin(self) -> None:
        if self.role != Role.ADMIN:
            raise Forbidden("this needs an admin token")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(record: dict[str, Any]) -> Token:
    rooms = tuple(record["rooms"])
    return Token(record["id"], Role(record["role"]), rooms, record["name"], record["created"])


async def create(bus: Bus, role: str, rooms: list[str], name: str = "") -> tuple[str, Token]:
    """A new token: returns the secret string (shown once) and what it allows."""
    if role not in Role.__members__.values():
        raise InvalidMessage(f"unknown role {role!r}: use operator, moderator, admin or screen")
    clean_rooms = tuple(sorted({keys.room_id(r) for r in rooms}))
    if role == Role.OPERATOR and not clean_rooms:
        raise InvalidMessage("an operator token needs at least one --room")
    if role in (Role.MODERATOR, Role.ADMIN) and clean_rooms:
        raise InvalidMessage(f"a {role} token covers every room; do not name rooms")
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidMessage(f"the name must be printable and at most {MAX_NAME} characters")
    if role == Role.SCREEN:
        keys.screen_name(name)
        taken = [t for t in await list_all(bus) if t.role == Role.SCREEN and t.name == name]
        if taken:
            raise InvalidMessage(
                f"screen {name!r} already has a token ({taken[0].id}): revoke it first"
                " (feed token revoke ID), or name this screen otherwise",
                field="name",
            )
    secret = secrets.token_urlsafe(32)
    while True:  # a new id, never one in use (an overwrite would silently revoke a token)
        token = Token(secrets.token_hex(6), Role(role), clean_rooms, name)
        if await bus.save_token({**token.record(), "hash": _digest(secret)}):
            return f"{PREFIX}_{token.id}_{secret}", token


async def verify(bus: Bus, presented: str | None) -> Token:
    """The token behind an `Authorization: Bearer ...` value, or Unauthorized."""
    if not presented:
        raise Unauthorized("this needs a token: send Authorization: Bearer <token>")
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isalnum():
        raise Unauthorized("this is not a feed token")
    record = await bus.token(parts[1])
    # Compare even when there is no record, so timing does not tell which ids exist.
    stored = record["hash"] if record else _digest("")
    if not hmac.compare_digest(stored, _digest(parts[2])) or record is None:
        raise Unauthorized("unknown or revoked token")
    return _token(record)


async def list_all(bus: Bus) -> list[Token]:
    return [_token(r) for r in await bus.tokens()]


async def revoke(bus: Bus, token_id: str) -> None:
    if not await bus.delete_token(token_id):
        raise NotFound(f"no token with id {token_id!r}")
