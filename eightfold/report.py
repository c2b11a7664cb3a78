"""Reports: Markdown sections with tables and PNG plots, written atomically to a folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eightfold.storage import atomic_dir, atomic_write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["Report", "Section", "format_value", "markdown_table"]


def format_value(value: Any) -> str:
    """Render a table cell: floats to 4 significant digits, ``None`` as an em dash.

    Numbers from 10,000 up to a billion are written whole with thousands separators, not in
    exponent form.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and 1e4 <= abs(value) < 1e9:
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if 1e4 <= abs(value) < 1e9:
            return f"{round(value):,}"
        if abs(value) >= 1e9 or (0 < abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table from a list of dicts (columns default to the first row's
    keys)."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns) if columns is not None else list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class Section:
    """One section of a report.

    ``figures`` maps a file name (``"sparsity_ppl.png"``) to a function that draws on a
    matplotlib ``Figure``; ``data`` is saved as JSON beside the Markdown.
    """

    title: str
    body: str = ""
    figures: dict[str, Callable[[Figure], None]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """A titled list of sections that writes itself to a folder."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> None:
        self.sections.append(section)

    def to_markdown(self) -> str:
        parts = [f"# {self.title}\n"]
        for section in self.sections:
            parts.append(f"## {section.title}\n")
            if section.body:
                parts.append(section.body.rstrip() + "\n")
            for name in section.figures:
                parts.append(f"![{Path(name).stem}]({name})\n")
        return "\n".join(parts)

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Write ``report.md``, ``results.json`` and the plots to ``out`` atomically."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        target = Path(out)
        with atomic_dir(target, kind="report") as tmp:
            for section in self.sections:
                for name, draw in section.figures.items():
                    fig = Figure(figsize=(6.4, 4.2), dpi=110)
                    draw(fig)
                    fig.tight_layout()
                    fig.savefig(tmp / name)
            (tmp / "report.md").write_text(self.to_markdown(), encoding="utf-8")
            atomic_write_json(
                tmp / "results.json", {s.title: s.data for s in self.sections if s.data}
            )
        logger.debug("report written to %s", target)
        return target
