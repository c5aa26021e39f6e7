"""Who may open a websocket (or an SSE stream) here: the origin check and the per-address limit,
before the upgrade."""

from __future__ import annotations

from aiohttp import web

from feed.errors import Forbidden, RateLimited


class Gate:
    """Who may open a websocket here: pages of allowed origins, and at most so many connections
    from one address at once."""

    def __init__(
        self,
        allowed_origins: frozenset[str],
        per_address: int,
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.allowed_origins = allowed_origins
        self.per_address = per_address
        self.trusted_proxies = trusted_proxies
        self.open: dict[str, int] = {}  # address -> connections open from it

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or, from a trusted proxy, the last address in
        X-Forwarded-For that is not itself a trusted proxy."""
        address = request.remote or "?"
        if address not in self.trusted_proxies:
            return address
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if hop not in self.trusted_proxies:
                return hop
        return address

    def admit(self, request: web.Request) -> str:
        """Check a websocket request before it is upgraded; returns the address to `leave` with.
        Raises Forbidden (403) for a page of another origin, RateLimited (429) for an address
        over its limit."""
        origin = request.headers.get("Origin")
        # Browsers always send Origin on websockets; other clients (screens' players, scripts)
        # need not, and cannot be tricked into connecting by a page, so they are let in.
        if origin is not None and not self._origin_ok(origin.rstrip("/").lower(), request):
            raise Forbidden(
                f"websocket connections from pages of {origin!r} are not allowed here"
                " (FEED_ALLOWED_ORIGINS)"
            )
        address = self.client_address(request)
        if self.per_address and self.open.get(address, 0) >= self.per_address:
            raise RateLimited(
                f"too many connections from {address}: at most {self.per_address} at once",
                retry_after=5,
            )
        self.open[address] = self.open.get(address, 0) + 1
        return address

    def leave(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)

    def _origin_ok(self, origin: str, request: web.Request) -> bool:
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        # The server's own pages: the origin names the host the request was sent to (as a
        # trusted proxy forwarded it; a proxy may also have dropped the port from Host).
        named = origin.partition("://")[2]
        if not named:  # "null" (a sandboxed frame, a file): no host of ours
            return False
        hosts = {request.host.lower()}
        forwarded = request.headers.get("X-Forwarded-Host", "").lower()
        if forwarded and (request.remote or "") in self.trusted_proxies:
            hosts.add(forwarded)
        return named in hosts or (":" not in request.host and named.split(":")[0] in hosts)
