"""A self-contained HTML report of analysed conversations (plots embedded as PNG).

Sections: corpus summary, outcome rates by goal intent, customer sentiment trajectories, top
outcome drivers with 95 % intervals, guideline violations, simulation results, and a few
conversations turn by turn so a reader can check the labels by eye. All text from conversations
is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eightfold.conversation.schema import OUTCOMES, ConversationAnalysis
from eightfold.storage import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = [
    "draw_drivers",
    "draw_outcomes_by_intent",
    "draw_sentiment_trajectories",
    "render_html",
    "write_html_report",
]

_COLOURS = {
    "resolved": "#2e7d32",
    "unresolved": "#c62828",
    "escalated": "#ef6c00",
    "abandoned": "#6a1b9a",
    "unknown": "#9e9e9e",
}


def draw_outcomes_by_intent(
    analyses: Sequence[ConversationAnalysis], top: int = 12
) -> Callable[[Figure], None]:
    """A drawing function: share of each outcome per goal intent (most frequent intents)."""
    counts = Counter(a.scene.customer_goal.intent for a in analyses)
    intents = [i for i, _ in counts.most_common(top)][::-1]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(111)
        left = np.zeros(len(intents))
        for status in OUTCOMES:
            shares = np.array(
                [
                    sum(
                        1
                        for a in analyses
                        if a.scene.customer_goal.intent == i and a.scene.outcome.status == status
                    )
                    / counts[i]
                    for i in intents
                ]
            )
            ax.barh(intents, shares, left=left, color=_COLOURS[status], label=status)
            left += shares
        ax.set_xlabel("share of conversations")
        ax.set_xlim(0, 1)
        ax.set_title("Outcome by goal intent (n per intent in labels)")
        ax.set_yticks(range(len(intents)), [f"{i} ({counts[i]})" for i in intents], fontsize=7)
        ax.legend(fontsize=7, loc="lower right")

    return draw


def draw_sentiment_trajectories(
    analyses: Sequence[ConversationAnalysis], max_lines: int = 60
) -> Callable[[Figure], None]:
    """A drawing function: customer valence by customer turn, one line per conversation, with
    the mean per outcome."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(111)
        for a in analyses[:max_lines]:
            values = [v for _, v in a.customer_valence()]
            ax.plot(
                range(len(values)),
                values,
                color=_COLOURS[a.scene.outcome.status],
                alpha=0.15,
                linewidth=0.8,
            )
        for status in OUTCOMES:
            rows = [
                [v for _, v in a.customer_valence()]
                for a in analyses
                if a.scene.outcome.status == status
            ]
            rows = [r for r in rows if r]
            if not rows:
                continue
            width = max(len(r) for r in rows)
            means = [np.mean([r[k] for r in rows if len(r) > k]) for k in range(width)]
            ax.plot(
                range(width),
                means,
                color=_COLOURS[status],
                linewidth=2.2,
                label=f"mean, {status} ({len(rows)})",
            )
        ax.axhline(0, color="black", linewidth=0.5)
        from matplotlib.ticker import MaxNLocator

        ax.set_xlabel("customer turn")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("VADER valence")
        ax.set_ylim(-1, 1)
        ax.set_title("Customer sentiment trajectories")
        ax.legend(fontsize=7)

    return draw


def draw_drivers(drivers: Sequence[Mapping[str, Any]], top: int = 10) -> Callable[[Figure], None]:
    """A drawing function: outcome-rate difference of the top drivers with 95 % intervals."""
    rows = list(drivers)[:top][::-1]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(111)
        diffs = np.array([r["difference"] for r in rows])
        lo = diffs - np.array([r["difference_ci"][0] for r in rows])
        hi = np.array([r["difference_ci"][1] for r in rows]) - diffs
        colours = ["#2e7d32" if d > 0 else "#c62828" for d in diffs]
        ax.barh(range(len(rows)), diffs, xerr=[lo, hi], color=colours, capsize=3)
        ax.set_yticks(range(len(rows)), [r["feature"][:40] for r in rows], fontsize=7)
        ax.axvline(0, color="black", linewidth=0.5)
        ax.set_xlabel("outcome rate with feature minus without (95% CI)")
        ax.set_title("Top outcome drivers")

    return draw


def _png(draw: Callable[[Figure], None]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.4), dpi=100)
    draw(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p><em>(none)</em></p>"
    cols = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list | tuple):
            return html.escape(
                ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
            )
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _conversation_html(a: ConversationAnalysis) -> str:
    rows = []
    for t in a.turns:
        intent = f"{t.intent.label} ({t.intent.score:.2f})" if t.intent else ""
        rows.append(
            {
                "turn": t.idx,
                "role": t.role,
                "text": t.text,
                "intent": intent,
                "emotion": f"{t.emotion.label} ({t.emotion.valence:+.2f})",
                "acts": ", ".join(t.acts),
            }
        )
    friction = (
        "; ".join(
            f"{e.kind} @ {e.turn}" + (f" ({e.detail})" if e.detail else "") for e in a.friction
        )
        or "none"
    )
    attributions = (
        "".join(
            f"<li>{html.escape(x.explanation)}: “{html.escape(x.quote)}”</li>"
            for x in a.attributions
        )
        or "<li>none</li>"
    )
    s = a.scene
    scalars = {k: v for k, v in a.meta.items() if not isinstance(v, list | dict)}
    return (
        f"<h3>{html.escape(a.conversation_id)}</h3>"
        f"<p><b>Summary:</b> {html.escape(s.summary)}<br>"
        f"<b>Goal:</b> {html.escape(s.customer_goal.intent)}; <b>outcome:</b> "
        f"{html.escape(s.outcome.status)} (evidence turns {s.outcome.evidence_turns}, "
        f"source {s.outcome.source}); <b>friction:</b> {html.escape(friction)}<br>"
        f"<b>Metadata:</b> {html.escape(str(scalars))}</p>"
        + _table(rows)
        + f"<p><b>Sentiment changes:</b></p><ul>{attributions}</ul>"
    )


def render_html(
    analyses: Sequence[ConversationAnalysis],
    *,
    drivers: Mapping[str, Any] | None = None,
    violations: Sequence[Mapping[str, Any]] | None = None,
    simulation: Mapping[str, Any] | None = None,
    examples: Sequence[str] | int = 5,
    title: str = "Conversation analysis",
    notes: str = "",
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    analyses
        Analysed conversations.
    drivers
        :meth:`DriverReport.to_dict` output (optional).
    violations
        Guideline violations as dicts (optional).
    simulation
        :meth:`SimulationReport.to_dict` output (optional).
    examples
        Conversation ids to show turn by turn, or how many to show (spread over outcomes).
    """
    if not analyses:
        raise ValueError("analyses is empty; nothing to report")
    n = len(analyses)
    outcome_counts: Counter[str] = Counter(a.scene.outcome.status for a in analyses)
    summary = [
        {
            "conversations": n,
            "turns": sum(a.scene.metrics.n_turns for a in analyses),
            **{f"{s} share": outcome_counts.get(s, 0) / n for s in OUTCOMES},
            "mean sentiment start": float(
                np.mean([a.scene.metrics.sentiment_start for a in analyses])
            ),
            "mean sentiment end": float(np.mean([a.scene.metrics.sentiment_end for a in analyses])),
            "repeat requests / conv": float(
                np.mean([a.scene.metrics.repeat_requests for a in analyses])
            ),
            "backend": ", ".join(sorted({a.backend for a in analyses})),
        }
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}"
        "th{background:#f2f2f2}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    parts += ["<h2>Corpus</h2>", _table(summary)]
    parts += [
        "<h2>Outcome rates by intent</h2>",
        f"<img alt='outcomes by intent' src='data:image/png;base64,"
        f"{_png(draw_outcomes_by_intent(analyses))}'>",
    ]
    parts += [
        "<h2>Sentiment trajectories</h2>",
        f"<img alt='sentiment trajectories' src='data:image/png;base64,"
        f"{_png(draw_sentiment_trajectories(analyses))}'>",
    ]
    if drivers and drivers.get("drivers"):
        rows = drivers["drivers"]
        parts += [
            f"<h2>Top drivers of {html.escape(str(drivers.get('outcome')))}</h2>",
            f"<p>{drivers.get('n_conversations')} conversations, base rate "
            f"{float(drivers.get('base_rate', 0)):.3f}.</p>",
            f"<img alt='drivers' src='data:image/png;base64,{_png(draw_drivers(rows))}'>",
            _table(
                rows[:15],
                [
                    "feature",
                    "n_with",
                    "rate_with",
                    "rate_without",
                    "difference",
                    "difference_ci",
                    "p_value",
                    "coefficient",
                    "coefficient_ci",
                ],
            ),
        ]
    if violations is not None:
        counts = Counter(v["rule"] for v in violations)
        parts += [
            "<h2>Guideline violations</h2>",
            _table([{"rule": r, "violations": c} for r, c in counts.most_common()]),
        ]
    if simulation:
        parts += [
            "<h2>Simulation</h2>",
            _table([{k: v for k, v in simulation.items() if k != "per_intent"}]),
        ]
        per_intent = simulation.get("per_intent") or {}
        parts.append(_table([{"intent": k, **v} for k, v in per_intent.items()]))
    by_id = {a.conversation_id: a for a in analyses}
    if isinstance(examples, int):
        chosen: list[ConversationAnalysis] = []
        for status in OUTCOMES:  # one of each outcome first, then in order
            chosen += [a for a in analyses if a.scene.outcome.status == status][:1]
        chosen += [a for a in analyses if a not in chosen]
        chosen = chosen[: max(examples, 0)]
    else:
        missing = [i for i in examples if i not in by_id]
        if missing:
            raise ValueError(f"examples: unknown conversation id(s) {missing[:5]}")
        chosen = [by_id[i] for i in examples]
    if chosen:
        parts.append("<h2>Conversations turn by turn</h2>")
        parts += [_conversation_html(a) for a in chosen]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(
    analyses: Sequence[ConversationAnalysis], path: str | os.PathLike[str], **kwargs: Any
) -> Path:
    """Write :func:`render_html` to ``path`` atomically."""
    target = atomic_write_text(path, render_html(analyses, **kwargs))
    logger.info("HTML report written to %s", target)
    return target
