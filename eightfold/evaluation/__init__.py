"""Evaluation: perplexity, needle-in-a-haystack, retrieval metrics, QA accuracy."""

from __future__ import annotations

from eightfold.evaluation.perplexity import PerplexityResult, perplexity, unigram_perplexity

__all__ = ["PerplexityResult", "perplexity", "unigram_perplexity"]
