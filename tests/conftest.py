"""Shared test fixtures: thread count, an isolated cache, and the ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two shared cores: one intra-op thread per test process is fastest for tiny models.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository, or skip (a user's clone does not have it)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: golden fixtures and data live beside the repository")
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    path = shared_dir / "golden"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test writes its cache under a temporary folder, never the user's."""
    if "EIGHTFOLD_TEST_CACHE" not in os.environ:
        os.environ["EIGHTFOLD_TEST_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    monkeypatch.setenv("EIGHTFOLD_CACHE", os.environ["EIGHTFOLD_TEST_CACHE"])
