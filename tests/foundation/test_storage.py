from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.storage import (
    OUTPUT_MARKER,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_distinct,
    check_output_dir,
    settings_key,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_write_refuses_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="folder of that name"):
        atomic_write_text(tmp_path, "x")


def test_atomic_dir_failure_keeps_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "f.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "f.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_replaces_its_own_output_and_empty_folders(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "new.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:
        (tmp / "a.txt").write_text("z")
    assert (empty / "a.txt").read_text() == "z"


def test_atomic_dir_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    target = tmp_path / "documents"
    target.mkdir()
    (target / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not written by eightfold"), atomic_dir(target):
        pass
    assert sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents"]


def test_atomic_dir_dot_is_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("k")
    monkeypatch.chdir(work)
    with pytest.raises(FileExistsError, match="not written by eightfold"), atomic_dir("."):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_atomic_dir_refuses_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"), atomic_dir(target):
        pass
    assert target.read_text() == "x"


def test_settings_key_is_order_independent() -> None:
    assert settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1})
    assert settings_key({"a": 1}) != settings_key({"a": 2})


def test_atomic_dir_never_replaces_an_output_of_another_kind(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target, kind="model") as tmp:
        (tmp / "weights.bin").write_text("trained")
    refused = pytest.raises(FileExistsError, match="holds an eightfold model, not an index")
    with refused, atomic_dir(target, kind="index") as tmp:
        (tmp / "vectors.npy").write_text("x")
    assert (target / "weights.bin").read_text() == "trained"
    with atomic_dir(target, kind="model") as tmp:
        (tmp / "weights.bin").write_text("retrained")
    assert (target / "weights.bin").read_text() == "retrained"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_check_output_dir_runs_before_any_work(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "important.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not written by eightfold"):
        check_output_dir(foreign, kind="model")
    assert check_output_dir(tmp_path / "new", kind="model") == tmp_path / "new"


def test_check_distinct_refuses_an_output_over_its_input(tmp_path: Path) -> None:
    model = tmp_path / "lm"
    model.mkdir()
    with pytest.raises(ValueError, match="overlaps the input model"):
        check_distinct(model, model=model)
    with pytest.raises(ValueError, match="overlaps the input model"):
        check_distinct(model / "sub", model=model)
    with pytest.raises(ValueError, match="overlaps the input data"):
        check_distinct(tmp_path, data=model)
    check_distinct(tmp_path / "other", model=model, corpus="python-docs", prior=None)
