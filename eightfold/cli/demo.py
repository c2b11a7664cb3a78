"""``eightfold demo``: the main job."""

from __future__ import annotations

from pathlib import Path

import typer

from eightfold.cli.common import console


def demo_command(
    out: Path = typer.Option(Path("demo-report"), "--out", help="Report folder (replaced)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny settings that finish in seconds."),
    only: list[str] = typer.Option(None, "--only", help="Run only sections whose title has this."),
    list_sections: bool = typer.Option(False, "--list", help="List the sections and exit."),
) -> None:
    """Run every method in miniature on real input and write a Markdown report with plots."""
    from eightfold.demo import registered_sections, run_demo

    if list_sections:
        for title in registered_sections():
            typer.echo(title)
        return
    folder, failed = run_demo(out, quick=quick, only=only or None)
    console.print(f"report written to [bold]{folder / 'report.md'}[/bold]")
    if failed:
        console.print(f"[red]{len(failed)} section(s) failed:[/red] {', '.join(failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
