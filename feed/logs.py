"""Logging for every process: one format, and secrets taken out of every line.

Tokens (`feed_<id>_<secret>`) and passwords in URLs never reach a log, whoever logs them: our
code, aiohttp quoting a request it could not parse, or a library's exception.
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TOKEN = re.compile(r"\b(feed_[0-9a-f]+_)[A-Za-z0-9_-]+")
_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^\s/@:]*):[^\s@]*@", re.IGNORECASE)


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


def setup(level: str, fmt: str = FORMAT) -> None:
    logging.basicConfig(level=level.upper(), format=fmt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redact())
