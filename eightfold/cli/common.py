"""Helpers shared by the CLI modules: the console, error display and common options."""

from __future__ import annotations

import logging
import re

from rich.console import Console
from rich.markup import escape
from safetensors import SafetensorError

from eightfold.llm import LLMResponseError, LLMUnavailableError

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
    SafetensorError,  # a damaged weights file
    re.error,  # a bad regular expression given as an option
    ImportError,  # an optional dependency that is not installed; the message names it
    LLMResponseError,  # an endpoint that refuses the request (bad key, unknown model)
    LLMUnavailableError,  # an endpoint that cannot be reached after every retry
)


def show_error(exc: BaseException) -> None:
    """Print a user error; with --log-level DEBUG the traceback follows."""
    console.print(
        f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True
    )
    if logging.getLogger("eightfold").isEnabledFor(logging.DEBUG):
        console.print_exception()
