"""Output a producer cannot forge: every table cell and error line shows control and
invisible format characters as escapes, so a value from the stream adds no row, erases
none and reorders no text; JSON output stays exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_processor.cli import main
from stream_processor.core.tables import printable, table_text
from tests.analytics.conftest import local_history, prod_task

HOSTILE = "boom\n(1 rows)\x1b[2J\x1b[1A\r\u202egnp.exe\u200b\x85"


@given(st.lists(st.lists(st.text(), min_size=2, max_size=2), max_size=5))
def test_a_table_has_one_line_per_row_and_no_control_character(cells: list[list[str]]) -> None:
    text = table_text(["A", "B"], cells)
    assert len(text.split("\n")) == len(cells) + 1
    assert all(c.isprintable() or c in " \n" for c in text)


def test_escapes_are_visible_and_printable_text_is_untouched() -> None:
    assert printable("a\nb\x1b[2J\u202ec") == "a\\nb\\x1b[2J\\u202ec"
    assert printable("prod-eu 中 é ✓ $ \\n") == "prod-eu 中 é ✓ $ \\n"


def test_failures_table_of_a_hostile_reason_is_one_row_and_json_is_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped = prod_task(
        "x",
        2,
        "STOPPED",
        time="2026-11-02T12:00:00Z",
        stoppedAt="2026-11-02T12:00:00Z",
        stopCode="UserInitiated",
        stoppedReason=HOSTILE,
    )
    local_history(tmp_path, [stopped])
    args = ["failures", "--from", "2026-11-02", "--to", "2026-11-02", "--history", str(tmp_path)]
    assert main([*args, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().split("\n")) == 2  # the header and one row
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[2J" in out
    assert main([*args, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reason"] == HOSTILE  # exact
