"""The on-disk index: round trips, appends, merges, locking, corruption, candidate stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eightfold.retrieval import Index, IndexCorruptedError, IndexLockedError, PoolingConfig
from eightfold.retrieval import index as index_module
from eightfold.retrieval.search import maxsim, maxsim_padded

DIM = 16
ENCODER = {"config": {"model": "none"}, "dim": DIM, "fingerprint": "test"}


def docs(n: int, seed: int = 0, lo: int = 3, hi: int = 30) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=gen)
    return [
        torch.nn.functional.normalize(torch.randn(int(m), DIM, generator=gen), dim=1)
        for m in lengths
    ]


def queries(n: int, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.functional.normalize(torch.randn(5, DIM, generator=gen), dim=1) for _ in range(n)
    ]


def build(path: Path, n: int = 20, **kwargs) -> Index:
    ids = [f"d{i}" for i in range(n)]
    return Index.from_embeddings(ids, docs(n), path, encoder=ENCODER, **kwargs)


# ------------------------------------------------------------------------------------------
# MaxSim


def test_padded_batches_score_like_unpadded_lists_even_when_all_negative() -> None:
    d = docs(6, seed=3)
    # All-negative similarities: a padded zero must never win the maximum.
    q = -torch.nn.functional.normalize(torch.stack([x.mean(0) for x in d[:4]]), dim=1)
    width = max(x.shape[0] for x in d)
    padded = torch.zeros(len(d), width, DIM)
    mask = torch.zeros(len(d), width, dtype=torch.bool)
    for i, x in enumerate(d):
        padded[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = True
    batch = maxsim_padded(q[None], padded, mask)[0]
    torch.testing.assert_close(batch, maxsim(q, d))
    brute = torch.stack([(q @ x.t()).max(1).values.sum() for x in d])
    torch.testing.assert_close(maxsim(q, d), brute)


def test_every_query_token_counts_separately() -> None:
    d = docs(3, seed=4)
    q = queries(1)[0]
    pooled_query = q.mean(0, keepdim=True) * q.shape[0]
    assert not torch.allclose(maxsim(q, d), maxsim(pooled_query, d))


# ------------------------------------------------------------------------------------------
# Round trip, k, ids


def test_round_trip_gives_identical_rankings(tmp_path: Path) -> None:
    index = build(tmp_path / "idx")
    again = Index.load(tmp_path / "idx", in_memory=False, verify=True)
    for q in queries(4):
        a = index.search_vectors([q], 5)[0]
        b = again.search_vectors([q], 5)[0]
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-6)


def test_exact_search_is_maxsim_over_stored_vectors(tmp_path: Path) -> None:
    d = docs(12)
    index = Index.from_embeddings(
        [str(i) for i in range(12)],
        d,
        tmp_path / "i",
        encoder=ENCODER,
        pooling=PoolingConfig(pool_factor=1),
    )
    q = queries(1)[0]
    stored = [x.half().float() for x in d]
    expected = maxsim(q, stored)
    hits = index.search_vectors([q], 12)[0]
    assert [h.id for h in hits] == [str(int(i)) for i in torch.argsort(-expected)]
    np.testing.assert_allclose(
        [h.score for h in hits], expected.sort(descending=True).values, rtol=1e-5
    )


def test_k_larger_than_the_index_returns_every_document_once(tmp_path: Path) -> None:
    index = build(tmp_path / "idx", n=7)
    hits = index.search_vectors([queries(1)[0]], 50)[0]
    assert len(hits) == 7 and len({h.id for h in hits}) == 7
    assert [h.rank for h in hits] == list(range(1, 8))


@pytest.mark.parametrize("n", [1, 2, 10])
def test_tiny_corpora_with_pooling_and_candidates(tmp_path: Path, n: int) -> None:
    index = build(tmp_path / "idx", n=n, pooling=PoolingConfig(pool_factor=4), candidates=True)
    assert index.has_candidate_stage
    hits = index.search_vectors([queries(1)[0]], 10, mode="candidates", n_probe=64)[0]
    assert len(hits) == n


def test_pooling_changes_the_stored_vector_count(tmp_path: Path) -> None:
    d = docs(10)
    plain = build(tmp_path / "a", n=10, pooling=PoolingConfig(pool_factor=1))
    pooled = build(tmp_path / "b", n=10, pooling=PoolingConfig(pool_factor=3))
    assert plain.num_vectors == sum(x.shape[0] for x in d)
    assert pooled.num_vectors < plain.num_vectors
    assert pooled.manifest["unpooled_vectors"] == plain.num_vectors
    assert pooled.nbytes() < plain.nbytes()


def test_duplicate_and_empty_and_bad_documents_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Index.from_embeddings(["a", "a"], docs(2), tmp_path / "x", encoder=ENCODER)
    with pytest.raises(ValueError, match="empty"):
        index_module._normalise_documents([("a", "text"), ("b", "   ")])
    with pytest.raises(ValueError, match="UTF-8"):
        index_module._normalise_documents([("a", b"\xff\xfe bad")])
    with pytest.raises(TypeError, match="single string"):
        index_module._normalise_documents("just one string")
    assert not (tmp_path / "x").exists()


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    build(tmp_path / "idx")
    with pytest.raises(FileExistsError, match="overwrite"):
        build(tmp_path / "idx")
    assert len(build(tmp_path / "idx", n=3, overwrite=True)) == 3


# ------------------------------------------------------------------------------------------
# Append, merge


def test_merge_equals_one_build(tmp_path: Path) -> None:
    d = docs(30)
    ids = [f"d{i}" for i in range(30)]
    whole = Index.from_embeddings(ids, d, tmp_path / "whole", encoder=ENCODER)
    a = Index.from_embeddings(ids[:12], d[:12], tmp_path / "a", encoder=ENCODER)
    b = Index.from_embeddings(ids[12:], d[12:], tmp_path / "b", encoder=ENCODER)
    merged = Index.merge([a.path, b.path], tmp_path / "m", candidates=True)
    assert merged.ids == whole.ids and merged.num_vectors == whole.num_vectors
    for q in queries(3):
        assert [h.id for h in merged.search_vectors([q], 8, mode="exact")[0]] == [
            h.id for h in whole.search_vectors([q], 8)[0]
        ]
    other = Index.from_embeddings(
        ["z"], d[:1], tmp_path / "o", encoder=ENCODER, pooling=PoolingConfig(pool_factor=3)
    )
    with pytest.raises(ValueError, match="pooling differs"):
        Index.merge([a.path, other.path], tmp_path / "bad")
    with pytest.raises(ValueError, match="unique"):
        Index.merge([a.path, a.path], tmp_path / "dup")


def test_shards_and_append_keep_ids_and_texts_consistent(tmp_path: Path, monkeypatch) -> None:
    texts = [f"text {i}" for i in range(9)]
    index = Index.from_embeddings(
        [f"d{i}" for i in range(9)],
        docs(9),
        tmp_path / "idx",
        encoder=ENCODER,
        texts=texts,
        shard_size=4,
    )
    assert len(index.manifest["shards"]) == 3
    assert all(index.text(f"d{i}") == texts[i] for i in range(9))

    # Append without a model: stub the encoder with random vectors.
    class Stub:
        def encode_documents(self, batch):
            return docs(len(batch), seed=9)

        def describe(self):
            return ENCODER

    index._encoder = Stub()  # type: ignore[assignment]
    index.add([("new1", "alpha"), ("new2", "beta")])
    assert index.ids[-2:] == ["new1", "new2"] and index.text("new2") == "beta"
    assert index.manifest["num_docs"] == 11
    with pytest.raises(ValueError, match="already in the index"):
        index.add([("d3", "again")])
    reloaded = Index.load(tmp_path / "idx", verify=True)
    assert reloaded.ids == index.ids


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = index_module._write_shard

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(index_module, "_write_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "idx", shard_size=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unfinished_shard_is_ignored_then_removed(tmp_path: Path) -> None:
    index = build(tmp_path / "idx")
    stray = tmp_path / "idx" / "shards" / "00007"
    stray.mkdir()
    (stray / "vectors.npy").write_bytes(b"partial")
    assert len(Index.load(tmp_path / "idx")) == 20
    index.build_candidate_stage()  # any writer cleans up
    assert not stray.exists()


# ------------------------------------------------------------------------------------------
# Locking


def test_second_writer_is_refused(tmp_path: Path) -> None:
    index = build(tmp_path / "idx")
    lock = tmp_path / ".idx.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(IndexLockedError, match="being written"):
        index.build_candidate_stage()
    lock.unlink()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    (tmp_path / ".idx.lock").write_text(json.dumps({"pid": dead, "host": os.uname().nodename}))
    leftover = tmp_path / ".idx.abc.tmp"
    leftover.mkdir()
    index = build(tmp_path / "idx")
    assert len(index) == 20 and not leftover.exists()
    assert not (tmp_path / ".idx.lock").exists()


# ------------------------------------------------------------------------------------------
# Corruption and versions


def test_not_an_index_and_other_versions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexCorruptedError, match="not an eightfold index"):
        Index.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        Index.load(tmp_path / "missing")
    build(tmp_path / "idx")
    manifest_file = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(IndexCorruptedError, match="Upgrade"):
        Index.load(tmp_path / "idx")
    manifest_file.write_text("{ not json")
    with pytest.raises(IndexCorruptedError, match="unreadable"):
        Index.load(tmp_path / "idx")


def test_damaged_files_are_detected(tmp_path: Path) -> None:
    build(tmp_path / "idx")
    shard = tmp_path / "idx" / "shards" / "00000"
    ids = json.loads((shard / "ids.json").read_text())
    (shard / "ids.json").write_text(json.dumps([*ids[:-1], "changed"]))
    Index.load(tmp_path / "idx")  # sizes still agree
    with pytest.raises(IndexCorruptedError, match="checksum"):
        Index.load(tmp_path / "idx", verify=True)
    vectors = shard / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-64])
    with pytest.raises(IndexCorruptedError):
        Index.load(tmp_path / "idx")
    (shard / "offsets.npy").unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        Index.load(tmp_path / "idx")


# ------------------------------------------------------------------------------------------
# Candidate stage


def test_candidate_stage_with_full_probe_equals_exact(tmp_path: Path) -> None:
    index = build(tmp_path / "idx", n=60, candidates=True)
    cells = index.manifest["candidates"]["centroids"]
    for q in queries(5):
        exact = index.search_vectors([q], 10, mode="exact")[0]
        approx = index.search_vectors([q], 10, mode="candidates", n_probe=cells, n_rerank=60)[0]
        assert [h.id for h in approx] == [h.id for h in exact]


def test_candidate_stage_recall_against_exact(tmp_path: Path) -> None:
    index = build(tmp_path / "idx", n=200, candidates=True)
    overlap = []
    for q in queries(20, seed=5):
        exact = {h.id for h in index.search_vectors([q], 10, mode="exact")[0]}
        approx = {h.id for h in index.search_vectors([q], 10, mode="candidates")[0]}
        overlap.append(len(exact & approx) / 10)
    assert np.mean(overlap) >= 0.9


def test_search_argument_errors(tmp_path: Path) -> None:
    index = build(tmp_path / "idx", n=3)
    q = queries(1)[0]
    with pytest.raises(ValueError, match="k="):
        index.search_vectors([q], 0)
    with pytest.raises(ValueError, match="mode="):
        index.search_vectors([q], 1, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no candidate stage"):
        index.search_vectors([q], 1, mode="candidates")
    with pytest.raises(ValueError, match="shape"):
        index.search_vectors([torch.zeros(3, DIM + 1)], 1)
