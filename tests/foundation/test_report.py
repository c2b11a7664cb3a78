from __future__ import annotations

import json
from pathlib import Path

from eightfold.report import Report, Section, format_value, markdown_table


def test_markdown_table_formats_cells() -> None:
    table = markdown_table([{"a": 1.23456, "b": None, "c": "x|y"}, {"a": 2, "b": True, "c": ""}])
    lines = table.splitlines()
    assert lines[0] == "| a | b | c |"
    assert lines[2] == "| 1.235 | — | x\\|y |"
    assert lines[3] == "| 2 | yes |  |"
    assert markdown_table([]) == "_(no rows)_\n"
    assert format_value(1.5e-5) == "1.500e-05"
    assert format_value(20120.4) == "20,120" and format_value(5245184) == "5,245,184"
    assert format_value(2036) == "2036" and format_value(3.2e12) == "3.200e+12"


def test_report_writes_markdown_plots_and_json(tmp_path: Path) -> None:
    def draw(fig) -> None:  # type: ignore[no-untyped-def]
        fig.add_subplot(111).plot([0, 1], [1, 0])

    report = Report(title="t")
    report.add(Section(title="One", body="hello", figures={"one.png": draw}, data={"x": 1}))
    report.add(Section(title="Two", body="world"))
    out = report.write(tmp_path / "r")
    text = (out / "report.md").read_text()
    assert text.index("## One") < text.index("## Two") and "![one](one.png)" in text
    assert (out / "one.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "results.json").read_text()) == {"One": {"x": 1}}
