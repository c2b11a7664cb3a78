"""A tiny byte-level BPE tokenizer and a matching tiny Llama, built offline in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from eightfold.models import tiny_causal_lm

HAYSTACK = [
    "The river flows past the old mill. Farmers bring grain in autumn. "
    "The miller weighs every sack and writes the weight in a ledger. "
    "Children watch the wheel turn. Rain fills the pond behind the dam. " * 3,
    "Bees visit the orchard in spring. The keeper counts the hives each week. " * 4,
]
EXTRA = [
    " The secret password of the archive is blue falcon.",
    "What is the secret password of the archive?\nAnswer:",
]


def tiny_tokenizer() -> Any:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[EOS]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator([*HAYSTACK, *EXTRA], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )


def tiny_model(tokenizer: Any) -> Any:
    model = tiny_causal_lm("llama", vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=2)
    model.set_attn_implementation("sdpa")
    return model


def save_tiny_lm(folder: Path) -> Path:
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
