"""Instruction following without instruction tuning (Hewitt et al., 2024, arXiv 2409.14254).

- :class:`RuleBasedAdapter`: the paper's three-rule adapter as a transformers ``LogitsProcessor``.
- :func:`generate_with_rules`: prompts in, alpaca_eval-style records out.
- :func:`tune`: instruction, response and single-task tuning on Hugging Face ``Trainer``.
- :class:`PairwiseJudge`: win rates of two output sets through any OpenAI-compatible endpoint.
"""

from __future__ import annotations

from eightfold.instruct.adapter import (
    ALL_RULES,
    PAPER_RULES,
    PAPER_UNIFORM_TABLE,
    AdapterConfig,
    ResolvedRules,
    RuleBasedAdapter,
    UniformEntry,
    parse_rules,
    product_of_experts_logits,
    resolve_piece,
    start_piece_score,
)
from eightfold.instruct.data import (
    SINGLE_TASKS,
    builtin_instructions,
    encode_conversation,
    load_conversations,
    single_task_messages,
    strip_instructions,
)
from eightfold.instruct.generation import (
    OutputStats,
    generate_with_rules,
    output_stats,
    repetition_rate,
)
from eightfold.instruct.judge import (
    JudgeReport,
    PairJudgement,
    PairwiseJudge,
    length_controlled_win_rate,
    load_outputs,
    parse_verdict,
    save_outputs,
)
from eightfold.instruct.template import CHATML, TEMPLATES, TULU, ChatTemplate, get_template
from eightfold.instruct.tuning import (
    MODES,
    PRESETS,
    LoraSettings,
    TuningConfig,
    TuningResult,
    prepare_conversations,
    preset,
    tune,
)

__all__ = [
    "ALL_RULES",
    "CHATML",
    "MODES",
    "PAPER_RULES",
    "PAPER_UNIFORM_TABLE",
    "PRESETS",
    "SINGLE_TASKS",
    "TEMPLATES",
    "TULU",
    "AdapterConfig",
    "ChatTemplate",
    "JudgeReport",
    "LoraSettings",
    "OutputStats",
    "PairJudgement",
    "PairwiseJudge",
    "ResolvedRules",
    "RuleBasedAdapter",
    "TuningConfig",
    "TuningResult",
    "UniformEntry",
    "builtin_instructions",
    "encode_conversation",
    "generate_with_rules",
    "get_template",
    "length_controlled_win_rate",
    "load_conversations",
    "load_outputs",
    "output_stats",
    "parse_rules",
    "parse_verdict",
    "prepare_conversations",
    "preset",
    "product_of_experts_logits",
    "repetition_rate",
    "resolve_piece",
    "save_outputs",
    "single_task_messages",
    "start_piece_score",
    "strip_instructions",
    "tune",
]
