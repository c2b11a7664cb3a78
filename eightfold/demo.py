"""``eightfold demo``: every method in miniature on real input, written as one report.

Families add sections without touching this module: a module ``eightfold/<family>/demo.py``
decorates a function with :func:`demo_section`, and :func:`run_demo` imports every such module.
A section function receives a :class:`DemoContext` and returns a :class:`~eightfold.report.Section`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import eightfold
from eightfold.pretrain import LMTrainingConfig, encode_corpus, train_lm
from eightfold.report import Report, Section, markdown_table
from eightfold.storage import atomic_dir, cache_dir, check_output_dir, settings_key

logger = logging.getLogger(__name__)

__all__ = ["DemoContext", "DemoLM", "demo_section", "registered_sections", "run_demo"]

SectionFn = Callable[["DemoContext"], Section]


@dataclass(frozen=True)
class _Registered:
    title: str
    order: float
    fn: SectionFn


_SECTIONS: dict[str, _Registered] = {}


def demo_section(title: str, *, order: float = 50.0) -> Callable[[SectionFn], SectionFn]:
    """Register a demo section; sections run in ascending ``order``, then by title."""

    def wrap(fn: SectionFn) -> SectionFn:
        _SECTIONS[title] = _Registered(title=title, order=order, fn=fn)
        return fn

    return wrap


def _discover() -> None:
    for info in pkgutil.iter_modules(eightfold.__path__):
        if info.ispkg:
            name = f"eightfold.{info.name}.demo"
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError:
                spec = None
            if spec is not None:
                importlib.import_module(name)


def registered_sections() -> list[str]:
    """Titles of all demo sections, in the order they run."""
    _discover()
    return [s.title for s in sorted(_SECTIONS.values(), key=lambda s: (s.order, s.title))]


# Settings of the demo language model: full (about ten minutes on 2 CPU cores) and quick (seconds).
DEMO_LM = LMTrainingConfig()
QUICK_LM = LMTrainingConfig(
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    block_size=64,
    batch_size=8,
    steps=40,
    warmup_steps=5,
    checkpoint_every=20,
    eval_blocks=16,
    learning_rate=3e-3,
)


@dataclass
class DemoLM:
    """The demo language model with its tokenizer and held-out token blocks."""

    model: Any
    tokenizer: Any
    folder: Path
    config: LMTrainingConfig
    training: dict[str, Any]
    validation_blocks: torch.Tensor
    test_blocks: torch.Tensor
    train_blocks: torch.Tensor


@dataclass
class DemoContext:
    """What a demo section gets: where to write, how small to be, and the shared demo model."""

    out: Path
    quick: bool = False
    seed: int = 0
    cache: Path = field(default_factory=lambda: cache_dir("demo"))
    _lm: DemoLM | None = None

    def language_model(self) -> DemoLM:
        """The demo LM, trained once and cached under the user cache folder by its settings."""
        if self._lm is None:
            self._lm = load_demo_lm(quick=self.quick)
        return self._lm


def load_demo_lm(*, quick: bool = False) -> DemoLM:
    """Train (or reuse from the cache) the demo language model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eightfold.corpora import load_corpus, pack_blocks

    config = QUICK_LM if quick else DEMO_LM
    folder = cache_dir("demo-lm") / settings_key(config.__dict__)
    if not (folder / "training.json").is_file():
        logger.info("training the demo language model (cached in %s)", folder)
        train_lm(config, folder)
    training = json.loads((folder / "training.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    def blocks(split: str, max_blocks: int | None) -> torch.Tensor:
        texts = load_corpus(config.corpus, split).texts  # type: ignore[arg-type]
        return pack_blocks(
            encode_corpus(tokenizer, texts),
            config.block_size,
            separator_id=tokenizer.eos_token_id,
            max_blocks=max_blocks,
        )

    return DemoLM(
        model=model,
        tokenizer=tokenizer,
        folder=folder,
        config=config,
        training=training,
        validation_blocks=blocks("validation", config.eval_blocks),
        test_blocks=blocks("test", config.eval_blocks),
        train_blocks=blocks("train", 4 * config.eval_blocks),
    )


@demo_section("Demo language model", order=0)
def _language_model_section(ctx: DemoContext) -> Section:
    lm = ctx.language_model()
    t = lm.training
    c = lm.config
    rows = [
        {
            "model": "demo Llama (ours)",
            "parameters": t["parameters"],
            "test perplexity": t["test_perplexity"],
            "validation perplexity": t["validation_perplexity"],
        },
        {
            "model": "unigram (same tokenizer)",
            "parameters": c.vocab_size,
            "test perplexity": t["unigram_test_perplexity"],
            "validation perplexity": None,
        },
    ]
    body = (
        f"A {t['parameters'] / 1e6:.2f}M-parameter Llama ({c.num_hidden_layers} layers, hidden "
        f"{c.hidden_size}, {c.num_attention_heads} heads / {c.num_key_value_heads} KV heads, "
        f"{c.vocab_size}-entry byte-level BPE) trained from scratch on `{c.corpus}` for "
        f"{t['steps']} steps ({t['train_tokens']:,} tokens, {t['train_seconds']:.0f} s on this "
        "machine). Perplexity is token-weighted over held-out blocks of "
        f"{c.block_size} tokens.\n\n" + markdown_table(rows)
    )
    history = t.get("history", [])

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(111)
        ax.plot([h["step"] for h in history], [h["loss"] for h in history])
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (nats/token)")
        ax.set_title("Demo LM training")

    return Section(
        title="Demo language model",
        body=body,
        figures={"demo_lm_loss.png": draw} if history else {},
        data={k: v for k, v in t.items() if k != "history"},
    )


def run_demo(
    out: str | os.PathLike[str], *, quick: bool = False, only: list[str] | None = None
) -> tuple[Path, list[str]]:
    """Run every registered section and write the report to ``out``.

    A section that fails is reported in the report (with its error) and the others still run.
    The report folder is written atomically: an interrupted demo leaves the previous report (or
    nothing) at ``out``.

    Returns
    -------
    (Path, list[str])
        The report folder and the titles of sections that failed.
    """
    out_path = Path(out)
    check_output_dir(out_path, kind="report")  # before the sections run, not after
    titles = registered_sections()
    if only:
        unknown = [name for name in only if not any(name.lower() in t.lower() for t in titles)]
        if unknown:
            raise ValueError(f"unknown demo section(s) {unknown}; known sections: {titles}")
        titles = [t for t in titles if any(name.lower() in t.lower() for name in only)]
    report = Report(title="eightfold demo" + (" (quick)" if quick else ""))
    failed: list[str] = []
    timings = []
    with atomic_dir(out_path, kind="report") as tmp:
        ctx = DemoContext(out=tmp, quick=quick)
        for title in titles:
            logger.info("demo: %s", title)
            t0 = time.perf_counter()
            try:
                section = _SECTIONS[title].fn(ctx)
            except Exception as exc:  # a failing section must not hide the others
                logger.error("demo section %r failed: %s", title, exc)
                logger.debug("%s", traceback.format_exc())
                section = Section(title=title, body=f"**This section failed:** `{exc!r}`\n")
                failed.append(title)
            timings.append({"section": title, "seconds": time.perf_counter() - t0})
            report.add(section)
        report.add(
            Section(title="Timings", body=markdown_table(timings), data={"timings": timings})
        )
        report.write(tmp / "report")
        for item in (tmp / "report").iterdir():
            item.rename(tmp / item.name)
        (tmp / "report").rmdir()
    logger.info("demo report written to %s", out_path)
    return out_path, failed
