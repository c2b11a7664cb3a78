"""Helpers shared by the CLI modules: the console, error display and common options."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.markup import escape

__all__ = ["USER_ERRORS", "console", "show_error"]

console = Console(stderr=True)

# Errors that mean "the input was wrong": shown as a message (exit 2), not a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    NotImplementedError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    UnicodeDecodeError,
)


def show_error(exc: BaseException) -> None:
    """Print a user error; with --log-level DEBUG the traceback follows."""
    console.print(
        f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True
    )
    if logging.getLogger("eightfold").isEnabledFor(logging.DEBUG):
        console.print_exception()
