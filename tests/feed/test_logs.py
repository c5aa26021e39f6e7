"""Secrets never reach a log line, whoever writes it."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest

from feed import logs

TOKEN = "feed_0123456789ab_Zq-9_xYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789a"


def test_scrub_hides_token_secrets_and_url_passwords() -> None:
    text = f"GET /api/me?token={TOKEN} via redis://user:p4ss@10.0.0.5:6379/0"
    assert logs.scrub(text) == (
        "GET /api/me?token=feed_0123456789ab_*** via redis://user:***@10.0.0.5:6379/0"
    )


def test_every_record_is_scrubbed_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("feed.test")
    caplog.handler.addFilter(logs.Redact())
    logger.warning("header %s", f"Bearer {TOKEN}")
    try:
        raise ValueError(f"bad header line: Authorization: Bearer {TOKEN}")
    except ValueError:
        logger.exception("error handling request")
    text = caplog.text
    assert "Zq-9_xYz" not in text
    assert text.count("feed_0123456789ab_***") == 2


def test_json_lines_carry_the_extra_fields_and_no_secret() -> None:
    formatter = logs.Json({"worker": 2})
    record = logging.LogRecord(
        "feed.ws", logging.INFO, __file__, 1, "client %d: %s", (7, TOKEN), None
    )
    record.conn = 7
    line = orjson.loads(formatter.format(record) if logs.Redact().filter(record) else "")
    assert line["msg"] == "client 7: feed_0123456789ab_***"
    assert (line["level"], line["logger"], line["conn"], line["worker"]) == (
        "info",
        "feed.ws",
        7,
        2,
    )
    assert line["ts"].endswith("Z")


def test_extra_fields_of_json_lines_are_scrubbed_too() -> None:
    record = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, "GET", None, None)
    record.first_request_line = f"GET /api/me?token={TOKEN} HTTP/1.1"
    line = logs.Json().format(record)
    assert "Zq-9_xYz" not in line and "feed_0123456789ab_***" in line


def test_a_body_the_client_broke_is_one_info_line_not_an_error() -> None:
    from aiohttp.http_exceptions import ContentEncodingError  # noqa: PLC0415

    from web.server import ClientFaults  # noqa: PLC0415

    try:
        raise ContentEncodingError("Can not decode content-encoding: deflate")
    except ContentEncodingError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", None,
            sys.exc_info(),
        )  # fmt: skip
    assert ClientFaults().filter(record)
    assert (record.levelname, record.exc_info) == ("INFO", None)
    assert "deflate" in record.getMessage()


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer%20{TOKEN}",  # after a word character
        f'"line":"first\\n{TOKEN}"',  # escaped in JSON
        "redis://:p@ss@10.0.0.5:6379/0",  # a password holding @
    ],
)
def test_scrub_finds_secrets_in_awkward_places(text: str) -> None:
    clean = logs.scrub(text)
    assert "Zq-9_xYz" not in clean and "p@ss" not in clean and "ss@10" not in clean
