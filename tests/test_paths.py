"""Destination paths, conflict candidates, byte-limited names and our temp names."""

from __future__ import annotations

import os
import re
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fta.errors import DestinationBlocked
from fta.paths import (
    DEFAULT_NAME_MAX,
    MAX_SUFFIX_BYTES,
    agent_id,
    candidate_names,
    destination_for,
    fit_name,
    name_max,
    split_name,
    temp_name,
    temp_owner,
)

ROOT = Path("/srv/destination")


def nbytes(name: str) -> int:
    return len(os.fsencode(name))


def first(name: str, count: int, limit: int = DEFAULT_NAME_MAX) -> list[str]:
    return list(islice(candidate_names(name, limit), count))


def test_destination_for_maps_below_the_root() -> None:
    assert destination_for(ROOT, "clip.mxf") == ROOT / "clip.mxf"
    assert destination_for(ROOT, "a/b/c.mxf") == ROOT / "a" / "b" / "c.mxf"
    assert destination_for(ROOT, "...") == ROOT / "..."
    assert destination_for(ROOT, "..clip") == ROOT / "..clip"


@pytest.mark.parametrize(
    "rel",
    ["..", "../x.mxf", "a/../../x.mxf", "a/..", "/etc/passwd", "/", "", "a//b", "a/", "./a", "a/./b", "."],
)
def test_destination_for_refuses_escapes_and_empty_parts(rel: str) -> None:
    with pytest.raises(DestinationBlocked, match="refusing"):
        destination_for(ROOT, rel)


def test_candidate_names_count_up_before_the_extension() -> None:
    assert first("video.mxf", 3) == ["video.mxf", "video_1.mxf", "video_2.mxf"]
    assert first("README", 2) == ["README", "README_1"]
    assert first(".bashrc", 2) == [".bashrc", ".bashrc_1"]
    assert first("archive.tar.gz", 2) == ["archive.tar.gz", "archive.tar_1.gz"]


def test_ascii_names_at_the_byte_limit_keep_their_extension() -> None:
    name = "v" * 251 + ".mxf"
    assert nbytes(name) == 255
    names = first(name, 12)
    assert names[0] == name
    assert names[1] == "v" * 249 + "_1.mxf"
    assert names[11] == "v" * 248 + "_11.mxf"
    assert all(nbytes(n) == 255 and n.endswith(".mxf") for n in names)
    assert len(set(names)) == 12


def test_multibyte_names_are_cut_on_character_boundaries() -> None:
    name = "æ" * 127 + ".mxf"  # 258 bytes
    names = first(name, 12)
    assert names[0] == "æ" * 125 + ".mxf"  # 254 bytes: a 126th 'æ' would need 256
    assert names[1] == "æ" * 124 + "_1.mxf"
    assert names[10] == "æ" * 124 + "_10.mxf"  # exactly 255: a whole character that fits is kept
    for candidate in names:
        assert nbytes(candidate) <= 255
        assert candidate.endswith(".mxf")
        os.fsencode(candidate).decode("utf-8")  # strict: no split character


def test_emoji_names_are_cut_on_character_boundaries() -> None:
    name = "🎬" * 70 + ".mov"  # 4 bytes each
    names = first(name, 3)
    assert names == ["🎬" * 62 + ".mov", "🎬" * 62 + "_1.mov", "🎬" * 62 + "_2.mov"]
    assert fit_name("a🎬", "", 4) == "a"
    assert fit_name("a🎬", "", 5) == "a🎬"
    assert fit_name("ææ", "", 3) == "æ"
    assert fit_name("ææ", "", 2) == "æ"


def test_a_cut_stem_that_ends_like_a_counter_gives_no_duplicate() -> None:
    name = "a" * 249 + "_1" + "zzzz.mxf"
    names = first(name, 4)
    assert names[0] == "a" * 249 + "_1.mxf"
    assert len(set(names)) == 4
    assert names[1] == "a" * 249 + "_2.mxf"  # "_1" is skipped: it would repeat the first name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.mxf", ("clip", ".mxf")),
        ("archive.tar.gz", ("archive.tar", ".gz")),
        (".bashrc", (".bashrc", "")),
        (".hidden.mxf", (".hidden", ".mxf")),
        ("README", ("README", "")),
        ("trailing.", ("trailing.", "")),
        ("a." + "x" * 15, ("a", "." + "x" * 15)),  # 16 bytes with the dot: still an extension
        ("a." + "x" * 16, ("a." + "x" * 16, "")),  # 17 bytes: part of the name
        ("report.final version 2", ("report.final version 2", "")),
        ("clip.MXF", ("clip", ".MXF")),
        ("report.final version 12", ("report.final version 12", "")),
        ("clip.æøå", ("clip", ".æøå")),
    ],
)
def test_split_name(name: str, expected: tuple[str, str]) -> None:
    assert split_name(name) == expected


def test_temp_name_is_hidden_short_deterministic_and_ours() -> None:
    owner = "0123abcd"
    temp = temp_name("clip.mxf", owner)
    assert temp.startswith(".clip.mxf.0123abcd")
    assert temp.endswith(".fta.tmp")
    assert temp == temp_name("clip.mxf", owner)
    assert temp != temp_name("clip2.mxf", owner)
    assert temp != temp_name("clip.mxf", "ffffffff")
    assert temp_owner(temp) == owner
    assert temp_owner(temp_name("clip.mxf", "ffffffff")) == "ffffffff"


def test_temp_name_of_long_names_stays_within_the_limit_and_apart() -> None:
    a = "x" * 300 + "a.mxf"
    b = "x" * 300 + "b.mxf"
    for limit in (255, 143, 64):
        ta, tb = temp_name(a, "0123abcd", limit), temp_name(b, "0123abcd", limit)
        assert nbytes(ta) <= limit and nbytes(tb) <= limit
        assert ta != tb  # cut to the same prefix, told apart by the hash
        assert temp_owner(ta) == temp_owner(tb) == "0123abcd"
    multibyte = temp_name("æ" * 200, "0123abcd")
    assert nbytes(multibyte) <= 255
    os.fsencode(multibyte).decode("utf-8")


@pytest.mark.parametrize(
    "name",
    [
        "clip.mxf",
        ".clip.mxf",
        ".clip.mxf.tmp",
        "clip.0123abcd4567.fta.tmp",  # not hidden
        ".clip.0123abcd456.fta.tmp",  # hash too short
        ".clip.0123ABCD4567.fta.tmp",  # upper case is not ours
        ".clip.0123abcd4567.fta.tmp.part",
        "",
    ],
)
def test_temp_owner_is_none_for_other_names(name: str) -> None:
    assert temp_owner(name) is None


def test_agent_id_is_eight_hex_digits_per_source_root() -> None:
    one = agent_id(Path("/srv/ingest"))
    assert re.fullmatch(r"[0-9a-f]{8}", one)
    assert one == agent_id(Path("/srv/ingest"))
    assert one != agent_id(Path("/srv/ingest2"))
    assert temp_owner(temp_name("clip.mxf", one)) == one


def test_name_max_asks_the_filesystem(tmp_path: Path) -> None:
    assert name_max(tmp_path) == os.pathconf(tmp_path, "PC_NAME_MAX")
    assert name_max(tmp_path / "missing") == DEFAULT_NAME_MAX
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert name_max(fd) == os.pathconf(tmp_path, "PC_NAME_MAX")  # a folder handle is asked the same
    finally:
        os.close(fd)


# --- properties -------------------------------------------------------------------------------------------------

segments = st.one_of(st.text(max_size=12), st.sampled_from(["..", ".", "", "...", "~", "\\"]))
relative_paths = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from(["", "", "/", "./", "../"]),
    st.lists(segments, min_size=0, max_size=6),
)
valid_text = st.characters(codec="utf-8", exclude_characters="/\x00")  # no lone surrogates
names = st.text(valid_text, min_size=1, max_size=120)


@settings(max_examples=200, deadline=None, database=None)
@given(relative_paths)
@example("a/../../etc")
@example("a/b/..")
def test_destination_for_never_leaves_the_root(rel: str) -> None:
    try:
        target = destination_for(ROOT, rel)
    except DestinationBlocked:
        return
    normalised = Path(os.path.normpath(target))
    assert normalised.is_relative_to(ROOT)
    assert normalised != ROOT
    assert ".." not in target.relative_to(ROOT).parts


@settings(max_examples=200, deadline=None, database=None)
@given(names, st.integers(min_value=24, max_value=255))
@example("a" * 249 + "_1zzzz.mxf", 255)
@example("æ" * 127 + ".mxf", 255)
def test_candidate_names_are_distinct_within_the_limit_and_keep_the_extension(name: str, limit: int) -> None:
    candidates = first(name, 50, limit)
    assert len(set(candidates)) == 50
    _, ext = split_name(name)
    for candidate in candidates:
        assert nbytes(candidate) <= limit
        assert candidate  # never an empty name
        os.fsencode(candidate).decode("utf-8")
        if nbytes(ext) + len("_50") < limit:
            assert candidate.endswith(ext)


@settings(max_examples=200, deadline=None, database=None)
@given(names, st.text(valid_text, max_size=20), st.integers(min_value=1, max_value=300))
def test_fit_name_never_exceeds_the_limit_nor_splits_a_character(stem: str, tail: str, limit: int) -> None:
    fitted = fit_name(stem, tail, limit)
    assert fitted.endswith(tail)
    if nbytes(tail) < limit:
        assert nbytes(fitted) <= limit
    kept = fitted[: len(fitted) - len(tail)] if tail else fitted
    assert stem.startswith(kept)
    os.fsencode(fitted).decode("utf-8")
    if nbytes(stem + tail) <= limit:
        assert fitted == stem + tail
    elif nbytes(tail) < limit and len(kept) < len(stem):
        assert nbytes(kept + stem[len(kept)] + tail) > limit  # the longest prefix that fits


def test_max_suffix_bytes_matches_split_name() -> None:
    longest = "." + "x" * (MAX_SUFFIX_BYTES - 1)
    assert split_name("a" + longest) == ("a", longest)
    assert split_name("a" + longest + "x") == ("a" + longest + "x", "")
