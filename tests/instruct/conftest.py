"""Fixtures of the instruct tests: a small byte-level BPE tokenizer and a tiny Llama on it."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from eightfold.models import tiny_causal_lm

TEXT = [
    "Write a short answer. The list has three items: one, two and three.\n",
    "What does len() return? It returns the number of items in a container.\n",
    "I think we should use a dict. - item\n * item\n # Heading\n ## Section\n",
    "Use sorted() to get a new sorted list; list.sort() sorts in place!\n",
    "<|user|>\nExplain x.\n<|assistant|>\nSure, here it is.\n",
]


def build_bpe_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )


@pytest.fixture(scope="session")
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    return build_bpe_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(bpe_tokenizer):
    # ~0.2M parameters: 2 layers, hidden 64, the tokenizer's vocabulary.
    return tiny_causal_lm("llama", seed=0, vocab_size=len(bpe_tokenizer), num_hidden_layers=2)
