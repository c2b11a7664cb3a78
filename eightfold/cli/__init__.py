"""The ``eightfold`` command line.

Each module of this package that defines ``register(app)`` adds its commands; modules are found
automatically, so a family adds a CLI module without touching this file. This package is the only
place that configures logging.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import typer

from eightfold.cli.common import USER_ERRORS, console, show_error
from eightfold.progress import enable_progress

__all__ = ["app", "main"]

app = typer.Typer(
    name="eightfold",
    help="Eight recent ML methods for any Hugging Face model, verified and measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    log_level: str = typer.Option(
        "INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR.", case_sensitive=False
    ),
) -> None:
    """Eight recent ML methods for any Hugging Face model, verified and measured."""
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(
            f"got {log_level!r}; expected one of DEBUG, INFO, WARNING, ERROR",
            param_hint="--log-level",
        )
    configure_logging(level)


def configure_logging(level: int) -> None:
    """Send eightfold's log records to the terminal through rich."""
    from rich.logging import RichHandler

    root = logging.getLogger("eightfold")
    for handler in list(root.handlers):
        if isinstance(handler, RichHandler):
            root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("transformers", "accelerate", "datasets"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # transformers draws its own bars when saving and loading; ours are enough.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    enable_progress(True)


def _register_modules() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_modules()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input ends with a clear message and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Standalone mode: typer reports usage errors itself and ends with SystemExit.
        app(args=args, prog_name="eightfold")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except USER_ERRORS as exc:
        show_error(exc)
        return 2
    return 0
