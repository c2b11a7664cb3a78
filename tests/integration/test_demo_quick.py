from __future__ import annotations

from pathlib import Path

import pytest

from eightfold.cli import main
from eightfold.demo import registered_sections, run_demo
from eightfold.storage import atomic_dir


def test_demo_language_model_section_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    folder, failed = run_demo(out, quick=True, only=["Demo language model"])
    assert failed == []
    text = (folder / "report.md").read_text()
    assert "unigram" in text and "test perplexity" in text
    assert (folder / "demo_lm_loss.png").stat().st_size > 1000
    assert (folder / "results.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_interrupted_demo_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    with atomic_dir(out) as tmp:
        (tmp / "report.md").write_text("previous")

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("eightfold.report.Report.write", boom)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, quick=True, only=["Demo language"])
    assert (out / "report.md").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_demo_reuses_the_cached_model_and_spares_foreign_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_demo(tmp_path / "first", quick=True, only=["Demo language model"])

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached demo model should have been reused")

    monkeypatch.setattr("eightfold.demo.train_lm", no_training)
    folder, failed = run_demo(tmp_path / "first", quick=True, only=["Demo language model"])
    assert failed == [] and "unigram" in (folder / "report.md").read_text()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"jpeg")
    assert main(["demo", "--quick", "--only", "Demo language", "--out", str(foreign)]) == 2
    assert [p.name for p in foreign.iterdir()] == ["cat.jpg"]


def test_demo_lists_sections_and_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert "Demo language model" in registered_sections()
    assert main(["demo", "--list"]) == 0
    assert "Demo language model" in capsys.readouterr().out
    assert main(["demo", "--only", "no-such-section", "--out", "/tmp/never-written"]) == 2
    assert not Path("/tmp/never-written").exists()
