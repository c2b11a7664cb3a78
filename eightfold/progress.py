"""Progress bars for long loops, shown only when an application asks for them.

Library code wraps its long loops in :func:`progress`. Nothing is drawn unless
:func:`enable_progress` was called (the CLI does this) and the ``eightfold`` logger is enabled for
INFO, so the library stays silent inside host applications and tests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ProgressUpdate", "enable_progress", "progress", "progress_enabled"]

_ENABLED = False

ProgressUpdate = Callable[..., None]


def enable_progress(enabled: bool = True) -> None:
    """Turn progress bars on or off for this process."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    """Whether progress bars are drawn now."""
    return _ENABLED and logging.getLogger("eightfold").isEnabledFor(logging.INFO)


def _format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[ProgressUpdate]:
    """A progress bar as a context manager.

    Yields a function ``update(advance=1, **fields)``; ``fields`` (loss, tokens/s, ...) are shown
    beside the bar.

    Examples
    --------
    >>> with progress("training", total=3) as update:
    ...     for step in range(3):
    ...         update(1, loss=0.5)
    """
    if not progress_enabled():
        yield lambda advance=1, **fields: None
        return

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=False,
        # stderr, like the log: stdout carries results that users redirect (JSON, JSONL).
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(description, total=total, info="")

        def update(advance: int = 1, **fields: Any) -> None:
            bar.update(task, advance=advance, info=_format_fields(fields))

        yield update
