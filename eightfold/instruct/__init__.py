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
from eightfold.instruct.template import CHATML, TEMPLATES, TULU, ChatTemplate, get_template

__all__ = [
    "ALL_RULES",
    "CHATML",
    "PAPER_RULES",
    "PAPER_UNIFORM_TABLE",
    "TEMPLATES",
    "TULU",
    "AdapterConfig",
    "ChatTemplate",
    "ResolvedRules",
    "RuleBasedAdapter",
    "UniformEntry",
    "get_template",
    "parse_rules",
    "product_of_experts_logits",
    "resolve_piece",
    "start_piece_score",
]
