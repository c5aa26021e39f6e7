"""The docs name tests as their proof: every test they name exists."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCS = ["docs/reliability.md"]


def named_tests(text: str) -> list[tuple[str, str]]:
    """(file, test) pairs: `web/test_x.py::test_a, ::test_b` names two tests of one file."""
    found = []
    for match in re.finditer(r"((?:\w+/)*test_\w+\.py)((?:(?:, )?::test_\w+)+)", text):
        for name in re.findall(r"::(test_\w+)", match.group(2)):
            found.append((match.group(1), name))
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = named_tests(text)
    assert len(named) > 30
    missing = []
    for path, name in named:
        source = ROOT / "tests" / path
        if not source.exists() or not re.search(
            rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.M
        ):
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc} names tests that do not exist: {missing}"
    for path in set(re.findall(r"\b((?:web|feed|publisher|bench)/test_\w+\.py)\b", text)):
        assert (ROOT / "tests" / path).exists(), path
