"""Pairwise evaluation: which of two responses to the same instruction is better, decided by an
LLM judge behind any OpenAI-compatible endpoint.

Hewitt et al. (2024, arXiv 2409.14254) report AlpacaEval 2 win rates of each adapted model
against the instruction-tuned model of the same seed (50 % = parity). :class:`PairwiseJudge`
gives the same kind of number with any judge: each pair is shown in both orders to cancel the
judge's position bias, ties count one half, and the report has a bootstrap confidence interval
and a length-controlled win rate (judges tend to prefer longer answers; one reviewer of the
paper raised exactly this for the rule-based adapter).

Judge failures never stop an evaluation: a reply that names no winner is asked again, and a
pair whose requests keep failing (timeouts, server errors, unparsable replies) counts as a tie
with a warning; the report says how many pairs that happened to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eightfold.llm import (
    LLMClient,
    LLMConfig,
    LLMOutputError,
    LLMResponseError,
    LLMUnavailableError,
)
from eightfold.progress import progress
from eightfold.storage import atomic_write_json, atomic_write_text, cache_dir, read_user_text

logger = logging.getLogger(__name__)

__all__ = [
    "JudgeReport",
    "PairJudgement",
    "PairwiseJudge",
    "length_controlled_win_rate",
    "load_outputs",
    "parse_verdict",
    "save_outputs",
]

SYSTEM_PROMPT = (
    "You are a careful evaluator of AI assistants. Given an instruction and two responses, "
    "decide which response follows the instruction better: it is helpful, correct, and "
    "appropriately detailed. Do not let the order of the responses or their length alone decide."
)
USER_PROMPT = (
    "# Instruction\n{instruction}\n\n# Response A\n{first}\n\n# Response B\n{second}\n\n"
    "Which response is better? Reply with exactly one word: A, B, or tie."
)

_VERDICT = re.compile(r"^\W*(?:response|output|answer)?\s*\(?\s*(a|b|tie)\b\s*\)?", re.IGNORECASE)
_LOOSE = re.compile(r"\b(?:response|output)\s*\(?([ab])\)?\b|\b(tie)\b", re.IGNORECASE)
_AUTH_ERRORS = (401, 403, 404)


def parse_verdict(reply: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` from a judge reply, or ``None`` if it names no winner.

    Accepts a bare letter, ``"Response A"``, ``"Output (b)"``, ``{"winner": "A"}`` and the same
    with trailing explanation; a reply that names both responses is not a verdict.
    """
    text = reply.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            for key in ("winner", "verdict", "better", "answer"):
                if isinstance(value.get(key), str):
                    return parse_verdict(value[key])
            return None
    match = _VERDICT.match(text)
    if match:
        word = match.group(1).lower()
        return "tie" if word == "tie" else word.upper()
    found = {(m.group(1) or m.group(2)).lower() for m in _LOOSE.finditer(text)}
    if len(found) == 1:
        word = found.pop()
        return "tie" if word == "tie" else word.upper()
    return None


@dataclass(frozen=True)
class PairJudgement:
    """The judge's decision on one instruction.

    ``score`` is the preference for the *model* output over the *reference* (1 win, 0.5 tie,
    0 loss), averaged over the orders shown; ``verdicts`` lists the raw verdict per order
    (``"model"``, ``"reference"``, ``"tie"`` or ``"failed"``).
    """

    instruction: str
    score: float
    verdicts: tuple[str, ...]
    failed: bool
    model_length: int
    reference_length: int


@dataclass
class JudgeReport:
    """Win rate of the model outputs against the reference outputs.

    ``failed`` counts pairs without any usable verdict (scored as ties); ``failed_verdicts``
    counts single orders without one (each scored 0.5 within its pair), so with both orders a
    pair with one failed order still counts the other order's verdict.
    """

    n: int
    win_rate: float
    standard_error: float
    ci_low: float
    ci_high: float
    length_controlled_win_rate: float
    lc_ci_low: float
    lc_ci_high: float
    wins: int
    ties: int
    losses: int
    failed: int
    failed_verdicts: int
    model_mean_length: float
    reference_mean_length: float
    judge: str
    both_orders: bool
    pairs: list[PairJudgement] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-pair list, as plain JSON-able values."""
        return {k: v for k, v in asdict(self).items() if k != "pairs"}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "pairs": [asdict(p) for p in self.pairs]}


def _bootstrap(
    values: np.ndarray, stat: Any, samples: int, seed: int, level: float
) -> tuple[float, float]:
    if len(values) < 2:
        value = float(stat(np.arange(len(values))))
        return value, value
    rng = np.random.default_rng(seed)
    stats = np.array([stat(rng.integers(0, len(values), len(values))) for _ in range(samples)])
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def length_controlled_win_rate(
    scores: Sequence[float] | np.ndarray,
    model_lengths: Sequence[int] | np.ndarray,
    reference_lengths: Sequence[int] | np.ndarray,
) -> float:
    """The win rate predicted at equal length, from a logistic fit of preference on length.

    Fits ``P(model preferred) = sigmoid(b0 + b1 * tanh(d / s))`` where ``d`` is the length
    difference (model minus reference, in characters) and ``s`` its standard deviation, with the
    scores (0, 0.5, 1) as soft labels, and returns ``sigmoid(b0)``. This is the length term of
    AlpacaEval 2's length-controlled win rate (Dubois et al. 2024, arXiv 2404.04475) without its
    per-instruction difficulty term, so the numbers are not comparable to that leaderboard.
    """
    y = np.asarray(scores, dtype=np.float64)
    diff = np.asarray(model_lengths, dtype=np.float64) - np.asarray(
        reference_lengths, dtype=np.float64
    )
    if len(y) == 0:
        raise ValueError("scores is empty; judge at least one pair")
    scale = diff.std()
    x = np.tanh(diff / scale) if scale > 0 else np.zeros_like(diff)
    design = np.stack([np.ones_like(x), x], axis=1)
    beta = np.zeros(2)
    # Newton's method on the L2-regularised (1e-3) logistic log-likelihood: 2 parameters.
    for _ in range(50):
        p = 1 / (1 + np.exp(-(design @ beta)))
        grad = design.T @ (y - p) - 1e-3 * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(1 / (1 + math.exp(-beta[0])))


class PairwiseJudge:
    """Decide pairs of responses with an LLM behind an OpenAI-compatible endpoint.

    Parameters
    ----------
    client
        An :class:`~eightfold.llm.LLMClient`, an :class:`~eightfold.llm.LLMConfig`, or ``None``
        to read ``EIGHTFOLD_LLM_BASE_URL`` / ``EIGHTFOLD_LLM_MODEL`` from the environment.
    both_orders
        Ask for each pair twice with the responses swapped (default), which cancels the judge's
        preference for a position; ``False`` shows one random order per pair (half the calls).
    output_retries
        How many more times to ask when a reply names no winner.
    cache
        Folder for judgements already made (keyed by judge model, prompt and order), ``True`` for
        the user cache, or ``None``/``False`` for none.
    seed
        Seed of the random orders and the bootstrap.
    """

    def __init__(
        self,
        client: LLMClient | LLMConfig | None = None,
        *,
        both_orders: bool = True,
        output_retries: int = 1,
        cache: str | os.PathLike[str] | bool | None = True,
        seed: int = 0,
    ) -> None:
        if client is None:
            client = LLMConfig.from_env()
        if isinstance(client, LLMConfig):
            client = LLMClient(client)
        if not isinstance(client, LLMClient):
            raise TypeError(
                f"client must be an LLMClient or LLMConfig, got {type(client).__name__}"
            )
        if not isinstance(output_retries, int) or output_retries < 0:
            raise ValueError(f"output_retries={output_retries!r}; expected an integer >= 0")
        self.client = client
        self.both_orders = both_orders
        self.output_retries = output_retries
        self.seed = seed
        if cache is True:
            self.cache: Path | None = cache_dir("instruct-judge")
        elif cache in (None, False):
            self.cache = None
        else:
            self.cache = Path(cache)  # type: ignore[arg-type]
            self.cache.mkdir(parents=True, exist_ok=True)

    # One verdict ------------------------------------------------------------------------------

    def _ask(self, instruction: str, first: str, second: str) -> str:
        """``"A"``, ``"B"``, ``"tie"`` for the shown order, or ``"failed"``."""
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": USER_PROMPT.format(instruction=instruction, first=first, second=second),
            },
        ]
        key = hashlib.sha256(
            json.dumps([self.client.config.model, messages], sort_keys=True).encode()
        ).hexdigest()
        cached = self.cache / f"{key}.json" if self.cache is not None else None
        if cached is not None and cached.is_file():
            try:
                verdict = json.loads(cached.read_text())["verdict"]
                if verdict in ("A", "B", "tie"):
                    return str(verdict)
            except (OSError, ValueError, KeyError, TypeError):
                logger.debug("ignoring unreadable judge cache entry %s", cached)

        for attempt in range(self.output_retries + 1):
            try:
                reply = self.client.chat(messages, max_tokens=16)
            except LLMResponseError as exc:
                if exc.status_code in _AUTH_ERRORS:
                    raise  # a wrong key or model name: every pair would fail the same way
                logger.warning("judge request rejected (%s); counting this order as a tie", exc)
                return "failed"
            except LLMUnavailableError as exc:
                logger.warning("judge unavailable after retries (%s); counting a tie", exc)
                return "failed"
            except LLMOutputError as exc:
                logger.warning("judge reply unusable (attempt %d): %s", attempt + 1, exc)
                continue
            verdict = parse_verdict(reply)
            if verdict is not None:
                if cached is not None:
                    atomic_write_json(cached, {"verdict": verdict, "reply": reply})
                return verdict
            logger.warning(
                "judge reply names no winner (attempt %d of %d): %r",
                attempt + 1,
                self.output_retries + 1,
                reply[:100],
            )
        logger.warning("no usable verdict for instruction %r; counting a tie", instruction[:60])
        return "failed"

    def judge_pair(
        self,
        instruction: str,
        model_output: str,
        reference_output: str,
        *,
        rng: random.Random | None = None,
    ) -> PairJudgement:
        """Judge one pair; see :class:`PairJudgement`."""
        rng = rng if rng is not None else random.Random(self.seed)
        orders = [True, False] if self.both_orders else [rng.random() < 0.5]
        verdicts: list[str] = []
        scores: list[float] = []
        for model_first in orders:
            first, second = (
                (model_output, reference_output)
                if model_first
                else (reference_output, model_output)
            )
            verdict = self._ask(instruction, first, second)
            if verdict == "failed":
                verdicts.append("failed")
                scores.append(0.5)
            elif verdict == "tie":
                verdicts.append("tie")
                scores.append(0.5)
            else:
                model_won = (verdict == "A") == model_first
                verdicts.append("model" if model_won else "reference")
                scores.append(1.0 if model_won else 0.0)
        return PairJudgement(
            instruction=instruction,
            score=sum(scores) / len(scores),
            verdicts=tuple(verdicts),
            failed=all(v == "failed" for v in verdicts),
            model_length=len(model_output),
            reference_length=len(reference_output),
        )

    # A whole comparison -----------------------------------------------------------------------

    def compare(
        self,
        model_outputs: Sequence[Mapping[str, Any]],
        reference_outputs: Sequence[Mapping[str, Any]],
        *,
        level: float = 0.95,
        bootstrap_samples: int = 1000,
    ) -> JudgeReport:
        """Win rate of ``model_outputs`` against ``reference_outputs``.

        Both are records ``{"instruction": str, "output": str, ...}`` for the same instructions
        (matched by instruction text, in any order).

        Raises
        ------
        ValueError
            If the two sets do not cover the same instructions, or a record lacks a field.
        """
        if not 0 < level < 1:
            raise ValueError(f"level={level!r}; expected a confidence level in (0, 1)")
        model = _index(model_outputs, "model_outputs")
        reference = _index(reference_outputs, "reference_outputs")
        only_model = sorted(set(model) - set(reference))
        only_reference = sorted(set(reference) - set(model))
        if only_model or only_reference:
            raise ValueError(
                f"the output sets cover different instructions: {len(only_model)} only in "
                f"model_outputs (e.g. {only_model[:1]}), {len(only_reference)} only in "
                f"reference_outputs (e.g. {only_reference[:1]}); judge outputs for the same "
                "instructions"
            )
        rng = random.Random(self.seed)
        pairs: list[PairJudgement] = []
        with progress("judging", total=len(model)) as update:
            for instruction in model:
                pairs.append(
                    self.judge_pair(
                        instruction, model[instruction], reference[instruction], rng=rng
                    )
                )
                update(1)
        return self._report(pairs, level, bootstrap_samples)

    def _report(self, pairs: list[PairJudgement], level: float, samples: int) -> JudgeReport:
        scores = np.array([p.score for p in pairs])
        m_len = np.array([p.model_length for p in pairs])
        r_len = np.array([p.reference_length for p in pairs])
        n = len(pairs)
        low, high = _bootstrap(scores, lambda i: scores[i].mean(), samples, self.seed, level)
        lc = length_controlled_win_rate(scores, m_len, r_len)
        lc_low, lc_high = _bootstrap(
            scores,
            lambda i: length_controlled_win_rate(scores[i], m_len[i], r_len[i]),
            max(100, samples // 4),
            self.seed + 1,
            level,
        )
        failed = sum(p.failed for p in pairs)
        failed_verdicts = sum(v == "failed" for p in pairs for v in p.verdicts)
        if failed_verdicts:
            logger.warning(
                "%d of %d pairs had no usable verdict and count as ties; %d single verdicts "
                "failed in all and count as ties within their pair",
                failed,
                n,
                failed_verdicts,
            )
        return JudgeReport(
            n=n,
            win_rate=float(scores.mean()),
            standard_error=float(scores.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            ci_low=low,
            ci_high=high,
            length_controlled_win_rate=lc,
            lc_ci_low=lc_low,
            lc_ci_high=lc_high,
            wins=int((scores > 0.5).sum()),
            ties=int((scores == 0.5).sum()),
            losses=int((scores < 0.5).sum()),
            failed=failed,
            failed_verdicts=failed_verdicts,
            model_mean_length=float(m_len.mean()),
            reference_mean_length=float(r_len.mean()),
            judge=self.client.config.model,
            both_orders=self.both_orders,
            pairs=pairs,
        )


def _index(records: Sequence[Mapping[str, Any]], name: str) -> dict[str, str]:
    if isinstance(records, Mapping) or not isinstance(records, Sequence) or not records:
        raise ValueError(f"{name} must be a non-empty list of {{'instruction', 'output'}} records")
    out: dict[str, str] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"{name}[{i}] must be a dict with 'instruction' and 'output'")
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"{name}[{i}] has no string field {key!r}")
        if record["instruction"] in out:
            raise ValueError(f"{name}[{i}] repeats instruction {record['instruction'][:60]!r}")
        out[record["instruction"]] = record["output"]
    return out


def load_outputs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Output records from JSONL (one per line) or an alpaca_eval JSON list.

    Each record needs ``instruction`` and ``output``; errors name the line (JSONL) or index.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"outputs file {str(file)!r} does not exist")
    text = read_user_text(file, "outputs file")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not a valid JSON list ({exc.msg})") from exc
        where = [f"{file}[{i}]" for i in range(len(rows))]
    else:
        from eightfold.instruct.data import load_jsonl

        numbered = load_jsonl(file)
        rows = [row for _, row in numbered]
        where = [f"{file}:{n}" for n, _ in numbered]
    for label, row in zip(where, rows, strict=True):
        if not isinstance(row, dict):
            raise ValueError(f"{label}: expected an object with 'instruction' and 'output'")
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{label}: missing string field {key!r}")
    if not rows:
        raise ValueError(f"outputs file {str(file)!r} has no records")
    return rows


def save_outputs(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write records atomically: ``.json`` as an alpaca_eval list, anything else as JSONL.

    Only ``instruction``, ``output``, ``generator`` and ``dataset`` go into the alpaca_eval
    format; JSONL keeps every field.
    """
    file = Path(path)
    if file.suffix == ".json":
        keep = ("instruction", "output", "generator", "dataset")
        rows = [{k: r[k] for k in keep if k in r} for r in records]
        return atomic_write_text(file, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    lines = [json.dumps(dict(r), ensure_ascii=False) for r in records]
    return atomic_write_text(file, "\n".join(lines) + "\n")
