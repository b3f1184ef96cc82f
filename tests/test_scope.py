"""What a run started through the API may narrow the work to (``fta.scope``): pure decisions, no filesystem."""

from __future__ import annotations

import pytest

from fta.scope import WHOLE_SOURCE, Scope, ScopeRefused, parse_scope

FILES = ["top.mxf", "cam1/a.mxf", "cam1/a.wav", "cam1/day2/b.mxf", "cam10/c.mxf", "cam1x.mxf", ".cam1/d.mxf"]


def covered(scope: Scope) -> list[str]:
    return [rel for rel in FILES if scope.covers(rel)]


def test_no_subfolder_and_no_pattern_is_the_whole_source() -> None:
    assert parse_scope(None, None) == WHOLE_SOURCE == parse_scope("", "") == parse_scope(".", None)
    assert WHOLE_SOURCE.whole and covered(WHOLE_SOURCE) == FILES


def test_a_subfolder_covers_what_lies_below_it_and_nothing_that_only_starts_alike() -> None:
    assert covered(parse_scope("cam1", None)) == ["cam1/a.mxf", "cam1/a.wav", "cam1/day2/b.mxf"]
    assert covered(parse_scope("cam1/day2", None)) == ["cam1/day2/b.mxf"]


@pytest.mark.parametrize("given", ["cam1/", "./cam1", "cam1/.", "./cam1/./"])
def test_a_subfolder_is_normalised(given: str) -> None:
    assert parse_scope(given, None).subfolder == "cam1"


def test_a_pattern_matches_file_names_case_sensitively() -> None:
    assert covered(parse_scope(None, "*.mxf")) == [rel for rel in FILES if rel.endswith(".mxf")]
    assert covered(parse_scope("cam1", "*.mxf")) == ["cam1/a.mxf", "cam1/day2/b.mxf"]
    assert covered(parse_scope(None, "a.*")) == ["cam1/a.mxf", "cam1/a.wav"]  # the name, wherever it lies
    assert covered(parse_scope(None, "*.MXF")) == []
    assert parse_scope("cam1", "*.mxf").describe() == "cam1/*.mxf"


@pytest.mark.parametrize(
    ("subfolder", "pattern", "why"),
    [
        ("../x", None, "'..' would leave the source"),
        ("cam1/../../x", None, "'..' would leave the source"),
        ("..", None, "'..' would leave the source"),
        ("/etc", None, "not absolute"),
        ("//etc", None, "not absolute"),
        ("cam1//x", None, "empty component"),
        ("cam\0", None, "NUL"),
        (None, "cam1/*.mxf", "without '/'"),
        (None, "*\0", "without '/'"),
    ],
)
def test_anything_that_could_reach_outside_is_refused_with_the_reason(
    subfolder: str | None, pattern: str | None, why: str
) -> None:
    with pytest.raises(ScopeRefused, match="refused") as refused:
        parse_scope(subfolder, pattern)
    assert why in str(refused.value)
