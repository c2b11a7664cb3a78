from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.storage import atomic_dir, atomic_write_json, atomic_write_text, settings_key


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


def test_atomic_dir_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_atomic_dir_refuses_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"), atomic_dir(target):
        pass
    assert target.read_text() == "x"


def test_settings_key_is_order_independent() -> None:
    assert settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1})
    assert settings_key({"a": 1}) != settings_key({"a": 2})
