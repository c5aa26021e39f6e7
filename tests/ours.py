"""What the property tests share: a call must give a value or the project's own error."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from typing import TypeVar

import orjson

from feed import protocol
from feed.errors import FeedError, error_body

# Hypothesis keeps caches in ./.hypothesis even with no example database: in /tmp instead.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY",
    os.path.join(tempfile.gettempdir(), "live-session-feed-hypothesis"),
)

T = TypeVar("T")
DEFAULT_RECURSION_LIMIT = 1000


def ours(call: Callable[[], T]) -> T | None:
    """The call's value, or None when it raised the project's own error with a message that a
    client and an API caller can be told.

    Any other exception propagates, and fails the property. The call runs with Python's default
    recursion limit, as in the server: Hypothesis raises it while a test runs, which would hide a
    RecursionError."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        return call()
    except FeedError as exc:
        assert isinstance(exc.message, str)
        assert exc.message.strip()
        assert str(exc) == exc.message
        protocol.error(exc.code, exc.message)  # a client can be told
        orjson.dumps(error_body(exc))  # and so can an API caller
        return None
    finally:
        sys.setrecursionlimit(limit)
