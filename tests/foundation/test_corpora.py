from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eightfold.corpora import load_corpus, pack_blocks, split_of


def test_builtin_corpora_split_by_document_deterministically() -> None:
    for name in ("python-docs", "python-source"):
        everything = load_corpus(name)
        parts = {s: load_corpus(name, s) for s in ("train", "validation", "test")}
        ids = {s: {d.id for d in c.documents} for s, c in parts.items()}
        assert sum(len(v) for v in ids.values()) == len(everything)
        assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
        assert len(ids["test"]) > 5 and len(ids["train"]) > 10 * len(ids["test"])
        assert ids["test"] == {d.id for d in load_corpus(name, "test").documents}
    docs = load_corpus("python-docs")
    assert any(d.id.startswith("topic:") for d in docs.documents)
    assert any(d.id == "module:json" for d in docs.documents)
    assert "def " in load_corpus("python-source").documents[0].text


def test_split_of_is_a_pure_function_of_the_id() -> None:
    assert split_of("module:json") == split_of("module:json")
    counts = {"train": 0, "validation": 0, "test": 0}
    for i in range(2000):
        counts[split_of(f"doc{i}")] += 1
    assert 1700 < counts["train"] < 1900 and counts["test"] > 60


def test_user_text_folder_and_jsonl(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("first paragraph\n\nsecond paragraph\n\n\n", encoding="utf-8")
    assert load_corpus(text).texts == ["first paragraph", "second paragraph"]

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "x.md").write_text("hello", encoding="utf-8")
    (folder / "y.txt").write_text("world", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe not utf8 \xff")
    assert load_corpus(folder).texts == ["hello", "world"]
    with pytest.raises(ValueError, match="not valid UTF-8"):
        load_corpus(folder, on_decode_error="error")

    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": "a", "text": "alpha"}\n\n{"text": "beta"}\n', encoding="utf-8")
    corpus = load_corpus(jsonl)
    assert [d.id for d in corpus.documents] == ["a", "c.jsonl:3"]


def test_bad_user_corpora(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a built-in corpus"):
        load_corpus(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        load_corpus(empty)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        load_corpus(jsonl)
    with pytest.raises(ValueError, match="split='nope' is not a split"):
        load_corpus("python-docs", "nope")  # type: ignore[arg-type]


def test_pack_blocks() -> None:
    blocks = pack_blocks([[1, 2, 3], [4, 5]], 3, separator_id=0)
    assert torch.equal(blocks, torch.tensor([[1, 2, 3], [0, 4, 5]]))
    assert pack_blocks([[1] * 10], 2, max_blocks=3).shape == (3, 2)
    with pytest.raises(ValueError, match="fewer than one block"):
        pack_blocks([[1, 2]], 8)
