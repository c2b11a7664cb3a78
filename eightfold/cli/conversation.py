"""``eightfold conversation analyze|attribute|coach|simulate|report|schema``.

JSONL in and out: ``analyze`` reads conversations (JSON, JSONL, CSV or text transcripts) and
writes one analysis per line; the other commands read those analyses. A batch goes on past a bad
conversation and lists the failures at the end (exit status 1 when there were any).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from eightfold.cli.common import console

logger = logging.getLogger(__name__)

conversation_app = typer.Typer(
    name="conversation",
    help="Conversation analysis in four steps: scene, causality, skills, generation.",
    no_args_is_help=True,
)


def _parse_roles(roles: Sequence[str] | None) -> dict[str, str] | None:
    if not roles:
        return None
    out = {}
    for item in roles:
        if "=" not in item:
            raise ValueError(f"--role {item!r}: expected NAME=ROLE, e.g. --role Alice=agent")
        name, role = item.rsplit("=", 1)
        out[name.strip()] = role.strip()
    return out


def _emit(text: str, out: Path | None) -> None:
    from eightfold.storage import atomic_write_text

    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        atomic_write_text(out, text)
        console.print(f"wrote [bold]{out}[/bold]")


def read_analyses(path: Path) -> list[Any]:
    """Analyses from a JSONL file written by ``analyze``; a bad line names its number."""
    from pydantic import ValidationError

    from eightfold.conversation.schema import ConversationAnalysis

    if not path.is_file():
        raise FileNotFoundError(f"analyses file {str(path)!r} does not exist")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(ConversationAnalysis.model_validate_json(line))
        except ValidationError as exc:
            first = str(exc).splitlines()
            raise ValueError(
                f"{path}:{number} is not a conversation analysis ({' '.join(first[:3])}); pass "
                "the JSONL written by 'eightfold conversation analyze'"
            ) from None
    if not out:
        raise ValueError(f"analyses file {str(path)!r} is empty")
    return out


def _success(spec: str) -> Any:
    from eightfold.conversation.causality import outcome_label

    get = outcome_label(spec)
    return lambda a: bool(get(a))


def _encoder_option() -> Any:
    return typer.Option("minilm", help="Sentence encoder: minilm (real MiniLM) or hashing.")


def analyze_command(
    input: Path = typer.Argument(..., help="File or folder of conversations."),
    out: Path = typer.Option(None, "-o", "--out", help="Analyses JSONL (default: stdout)."),
    format: str = typer.Option("auto", help="auto, json, jsonl, csv or text."),
    backend: str = typer.Option("offline", help="offline or llm (EIGHTFOLD_LLM_* settings)."),
    encoder: str = _encoder_option(),
    intents: Path = typer.Option(None, help="Intent catalogue JSON {intents: {label: [...]}}."),
    role: list[str] = typer.Option(None, "--role", help="NAME=ROLE for unknown speaker names."),
    redact: bool = typer.Option(True, help="Redact emails, phone, card, account numbers."),
    encoding_errors: str = typer.Option("strict", help="strict or replace (non-UTF-8 bytes)."),
    max_turn_chars: int = typer.Option(20_000, help="Longer turns are cut (with a warning)."),
    errors_out: Path = typer.Option(None, "--errors", help="Write failures here as JSONL."),
    llm_cache: bool = typer.Option(True, help="Reuse validated LLM replies cached on disk."),
) -> None:
    """Step 1 (and step 2 within each conversation): analyse every conversation in INPUT."""
    from eightfold.conversation.ingest import read_conversations
    from eightfold.conversation.scene import Analyzer, AnalyzerConfig

    if backend not in ("offline", "llm"):
        raise ValueError(f"--backend {backend!r}; expected offline or llm")
    result = read_conversations(
        input,
        format=format,  # type: ignore[arg-type]
        redact=redact,
        on_error="collect",
        speaker_roles=_parse_roles(role),
        max_turn_chars=max_turn_chars,
        encoding_errors=encoding_errors,  # type: ignore[arg-type]
    )
    console.print(f"read {len(result.conversations)} conversation(s) from {input}")
    if not result.conversations and not result.errors:
        raise ValueError(
            f"{str(input)!r} holds no conversations; expected JSON/JSONL conversations, a CSV "
            "with one row per turn, or transcripts with speaker prefixes (see --format)"
        )
    offline = Analyzer(AnalyzerConfig(encoder=encoder, intents=str(intents) if intents else None))
    analyzer: Any = offline
    if backend == "llm":
        from eightfold.conversation.llm_backend import LLMAnalyzer
        from eightfold.llm import LLMClient, LLMConfig

        analyzer = LLMAnalyzer(LLMClient(LLMConfig.from_env()), fallback=offline, cache=llm_cache)
    analyses, failures = analyzer.analyze_many(result.conversations)
    lines = "".join(a.model_dump_json() + "\n" for a in analyses)
    _emit(lines, out)
    problems = [{"where": e.where, "error": e.message} for e in result.errors]
    problems += [{"where": e.where, "error": str(e)} for e in failures]
    _report_problems(problems, errors_out, done=len(analyses))


def _report_problems(problems: list[dict[str, str]], errors_out: Path | None, done: int) -> None:
    from eightfold.storage import atomic_write_text

    console.print(f"analysed {done} conversation(s)")
    if not problems:
        return
    if errors_out is not None:
        atomic_write_text(errors_out, "".join(json.dumps(p) + "\n" for p in problems))
    console.print(f"[red]{len(problems)} conversation(s) failed:[/red]")
    for p in problems[:20]:
        console.print(f"  {p['where']}: {p['error']}", highlight=False, markup=False)
    if len(problems) > 20:
        console.print(
            f"  ... and {len(problems) - 20} more"
            + (f" (all in {errors_out})" if errors_out else " (pass --errors FILE for all)")
        )
    raise typer.Exit(1)


def attribute_command(
    analyses: Path = typer.Argument(..., help="Analyses JSONL from 'analyze'."),
    outcome: str = typer.Option(
        "status=resolved", help="status=<outcome> or a boolean metadata field (order_placed)."
    ),
    out: Path = typer.Option(None, "-o", "--out", help="Drivers JSON (default: stdout)."),
    min_count: int = typer.Option(5, help="Skip features seen in fewer conversations."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for coefficient intervals."),
    seed: int = typer.Option(0),
) -> None:
    """Step 2 across the corpus: rank the drivers of an outcome with counts and 95% intervals."""
    from eightfold.conversation.causality import outcome_drivers

    items = read_analyses(analyses)
    report = outcome_drivers(items, outcome, min_count=min_count, n_bootstrap=bootstrap, seed=seed)
    _emit(json.dumps(report.to_dict(), indent=2) + "\n", out)
    console.print(
        f"{report.n_conversations} conversations, {outcome} rate {report.base_rate:.3f}; "
        f"{len(report.skipped)} without the label"
    )
    for d in report.drivers[:8]:
        console.print(
            f"  {d.feature:<45} n={d.n_with:<5} {d.rate_with:.2f} vs {d.rate_without:.2f} "
            f"diff {d.difference:+.2f} [{d.difference_ci[0]:+.2f}, {d.difference_ci[1]:+.2f}]",
            highlight=False,
            markup=False,
        )


def coach_command(
    analyses: Path = typer.Argument(..., help="Analyses JSONL from 'analyze'."),
    guidelines: Path = typer.Option(None, help="Guideline rules (JSON or YAML); default rules."),
    out: Path = typer.Option(None, "-o", "--out", help="Violations JSONL (default: stdout)."),
    export_sft: Path = typer.Option(None, help="Write supervised pairs (JSONL) here."),
    export_dpo: Path = typer.Option(None, help="Write preference pairs (JSONL) here."),
    pair_format: str = typer.Option("trl", help="SFT layout: trl (prompt/completion) or messages."),
    success: str = typer.Option(
        "status=resolved", help="What counts as success: status=<outcome> or a metadata field."
    ),
    encoder: str = _encoder_option(),
    min_similarity: float = typer.Option(0.5, help="Minimum context cosine for a DPO exemplar."),
) -> None:
    """Step 3: guideline checks, exemplar replies and training-pair export."""
    from eightfold.conversation.skills import (
        ExemplarIndex,
        check_guidelines,
        dpo_pairs,
        load_guidelines,
        sft_pairs,
        write_jsonl,
    )

    items = read_analyses(analyses)
    rules = load_guidelines(guidelines)
    ok = _success(success)
    index = ExemplarIndex.build(items, encoder=encoder, success=ok, guidelines=rules)
    rows = []
    for a in items:
        for v in check_guidelines(a, rules):
            row = v.to_dict()
            if v.turn is not None:
                context = next(
                    (t.text for t in reversed(a.turns[: v.turn]) if t.role == "customer"), ""
                )
                best = (
                    index.search(
                        context,
                        intent=a.scene.customer_goal.intent,
                        k=1,
                        exclude_conversation=a.conversation_id,
                    )
                    if context
                    else []
                )
                if best:
                    row["exemplar"] = {
                        "text": best[0].text,
                        "similarity": best[0].similarity,
                        "from": f"{best[0].conversation_id}#{best[0].turn}",
                    }
            rows.append(row)
    _emit("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), out)
    console.print(
        f"{len(rows)} guideline violation(s) in {len(items)} conversation(s); "
        f"{len(index)} exemplar turns"
    )
    if export_sft is not None:
        pairs = sft_pairs(items, success=ok, guidelines=rules, format=pair_format)  # type: ignore[arg-type]
        write_jsonl(pairs, export_sft)
        console.print(f"wrote {len(pairs)} SFT pair(s) to [bold]{export_sft}[/bold]")
    if export_dpo is not None:
        pairs = dpo_pairs(items, index, guidelines=rules, success=ok, min_similarity=min_similarity)
        write_jsonl(pairs, export_dpo)
        console.print(f"wrote {len(pairs)} DPO pair(s) to [bold]{export_dpo}[/bold]")


def simulate_command(
    from_: Path = typer.Option(None, "--from", help="Analyses JSONL to take scenarios from."),
    scenarios: Path = typer.Option(None, help="Scenarios JSON list (intent, request, slots...)."),
    n: int = typer.Option(20, help="Conversations to generate."),
    seed: int = typer.Option(0),
    misunderstand: float = typer.Option(0.0, help="Rule agent: chance to re-ask a given slot."),
    max_turns: int = typer.Option(12),
    customer: str = typer.Option("template", help="template or llm (EIGHTFOLD_LLM_* settings)."),
    agent: str = typer.Option(None, help="OpenAI-compatible URL of the agent under test."),
    agent_model: str = typer.Option(None, help="Model name at --agent."),
    out: Path = typer.Option(None, "-o", "--out", help="Generated conversations JSONL."),
    encoder: str = _encoder_option(),
) -> None:
    """Step 4: generate conversations from scenarios, analyse them again, report success."""
    from eightfold.conversation.scene import Analyzer, AnalyzerConfig
    from eightfold.conversation.simulate import (
        EndpointAgent,
        LLMCustomer,
        Scenario,
        evaluate_simulations,
        scenario_from_analysis,
        simulate,
        template_batch,
    )

    if customer not in ("template", "llm"):
        raise ValueError(f"--customer {customer!r}; expected template or llm")
    if scenarios is not None:
        data = json.loads(Path(scenarios).read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"--scenarios {scenarios}: expected a JSON list of scenarios")
        items = [Scenario(**d) for d in data]
    elif from_ is not None:
        items = [scenario_from_analysis(a) for a in read_analyses(from_)]
    else:
        from eightfold.conversation.demo import SAMPLE_SCENARIOS

        items = list(SAMPLE_SCENARIOS)
    if customer == "template" and agent is None:
        convs = template_batch(
            items, n, seed=seed, misunderstand=misunderstand, max_turns=max_turns
        )
    else:
        from eightfold.llm import LLMClient, LLMConfig

        agent_client = (
            LLMClient(LLMConfig(base_url=agent, model=agent_model or "agent")) if agent else None
        )
        customer_client = LLMClient(LLMConfig.from_env()) if customer == "llm" else None
        convs = []
        for i in range(n):
            s = items[i % len(items)]
            from eightfold.conversation.simulate import RuleAgent, TemplateCustomer

            who: Any = (
                LLMCustomer(s, customer_client)
                if customer_client is not None
                else TemplateCustomer(s, seed=seed + i)
            )
            bot: Any = (
                EndpointAgent(agent_client)
                if agent_client is not None
                else RuleAgent(
                    list(s.slots),
                    values={k: [v] for k, v in s.slots.items()},
                    misunderstand=misunderstand,
                    seed=seed + i,
                )
            )
            convs.append(
                simulate(
                    who,
                    bot,
                    conversation_id=f"sim-{seed}-{i}",
                    max_turns=max_turns,
                    meta={"intent": s.intent},
                )
            )
    if out is not None:
        from eightfold.storage import atomic_write_text

        atomic_write_text(out, "".join(c.model_dump_json() + "\n" for c in convs))
        console.print(f"wrote {len(convs)} conversation(s) to [bold]{out}[/bold]")
    report = evaluate_simulations(convs, Analyzer(AnalyzerConfig(encoder=encoder)).analyze_many)
    typer.echo(json.dumps(report.to_dict(), indent=2))


def report_command(
    analyses: Path = typer.Argument(..., help="Analyses JSONL from 'analyze'."),
    html_out: Path = typer.Option(..., "--html", help="HTML report to write."),
    drivers: Path = typer.Option(None, help="Drivers JSON from 'attribute'."),
    violations: Path = typer.Option(None, help="Violations JSONL from 'coach'."),
    simulation: Path = typer.Option(None, help="Simulation report JSON from 'simulate'."),
    examples: int = typer.Option(5, help="Conversations shown turn by turn."),
    example_id: list[str] = typer.Option(None, "--example", help="Show this conversation id."),
    title: str = typer.Option("Conversation analysis"),
) -> None:
    """An HTML report: outcome rates by intent, sentiment trajectories, top drivers, examples."""
    from eightfold.conversation.report import write_html_report

    def load_json(path: Path | None) -> Any:
        if path is None:
            return None
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)

    items = read_analyses(analyses)
    write_html_report(
        items,
        html_out,
        drivers=load_json(drivers),
        violations=load_json(violations),
        simulation=load_json(simulation),
        examples=example_id or examples,
        title=title,
    )
    console.print(f"report written to [bold]{html_out}[/bold]")


def schema_command() -> None:
    """Print the JSON Schema of one conversation analysis."""
    from eightfold.conversation.schema import analysis_json_schema

    typer.echo(json.dumps(analysis_json_schema(), indent=2))


conversation_app.command("analyze")(analyze_command)
conversation_app.command("attribute")(attribute_command)
conversation_app.command("coach")(coach_command)
conversation_app.command("simulate")(simulate_command)
conversation_app.command("report")(report_command)
conversation_app.command("schema")(schema_command)


def register(app: typer.Typer) -> None:
    app.add_typer(conversation_app, name="conversation")


__all__ = ["read_analyses", "register"]
