"""How a replica's stderr, read in chunks, becomes one event per line."""

from __future__ import annotations

from hpcgate.services.logs import LINE_MAX, split_lines


def _feed(chunks: list[str]) -> tuple[list[str], str | None]:
    pending: str | None = ""
    found: list[str] = []
    for chunk in chunks:
        lines, pending = split_lines(pending, chunk)
        found += lines
    return found, pending


def test_a_line_in_several_chunks_is_one_line() -> None:
    assert _feed(["loading mo", "del\r\nready", " on 8000\n", "tail"]) == (
        ["loading model", "ready on 8000"],
        "tail",
    )


def test_empty_lines_and_chunks_are_kept_as_they_come() -> None:
    assert _feed(["", "a\n\n", "", "b\n"]) == (["a", "", "b"], "")


def test_a_line_too_long_goes_out_cut_once_and_its_rest_is_skipped() -> None:
    long = "x" * (LINE_MAX + 10)
    lines, pending = _feed([long[:100], long[100:], "y" * 50, "z\nnext\n"])
    assert lines == ["x" * LINE_MAX, "next"]
    assert pending == ""
