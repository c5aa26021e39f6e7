"""Logging for every process: one format, and secrets taken out of every line.

Tokens (`feed_<id>_<secret>`) and passwords in URLs never reach a log, whoever logs them: our
code, aiohttp quoting a request it could not parse, or a library's exception.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Anywhere, not after a word boundary: a token may follow a word character ("Bearer%20feed_...",
# an escaped "\nfeed_..."). Token ids are 12 hex digits (publisher.tokens).
_TOKEN = re.compile(r"(feed_[0-9a-f]{12}_)[A-Za-z0-9_-]+")
# Up to the last @ before a space: a password may hold @ itself.
_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^\s/@:]*):\S*@", re.IGNORECASE)


def scrub(text: str) -> str:
    """`text` with token secrets and URL passwords replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", _TOKEN.sub(r"\1***", text))


class Redact(logging.Filter):
    """A handler filter that scrubs each record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # also when another handler formatted it first
            record.exc_text = scrub(record.exc_text)
        return True


# What every record has: not copied into a JSON line as an extra field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class Json(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields
    (`conn`, the connection's id, `worker`...), then the traceback if there is one."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc"] = record.exc_text
        # Extra fields are scrubbed too: aiohttp's access log, for one, adds the request line.
        return scrub(orjson.dumps(line, default=str).decode())


def setup(
    level: str,
    fmt: str = FORMAT,
    *,
    style: str = "auto",
    filters: tuple[logging.Filter, ...] = (),
    **static: Any,
) -> None:
    """Log to stderr at `level`: as text (`fmt`) in a terminal or with style "text", as JSON
    lines otherwise or with style "json"; `static` fields go on every JSON line."""
    handler = logging.StreamHandler()
    as_json = style == "json" or (style == "auto" and not sys.stderr.isatty())
    handler.setFormatter(Json(static) if as_json else logging.Formatter(fmt))
    for extra in filters:
        handler.addFilter(extra)
    handler.addFilter(Redact())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
