"""The vision3d demo section runs in quick mode and writes its plot."""

from __future__ import annotations

import json

from eightfold.demo import registered_sections, run_demo


def test_demo_section_quick(tmp_path):
    assert "LLaVA-3D: 3D patches and scene tokens" in registered_sections()
    folder, failed = run_demo(tmp_path / "report", quick=True, only=["LLaVA-3D"])
    assert failed == []
    assert (folder / "llava3d_topdown.png").stat().st_size > 1000
    data = json.loads((folder / "results.json").read_text())[
        "LLaVA-3D: 3D patches and scene tokens"
    ]
    assert data["patches"] == 4 * 576
    assert data["fps_tokens"] == 256
    assert data["voxel_tokens"]["0.2"] < data["voxel_tokens"]["0.1"] < data["patches"]
    assert data["patch_surface_error_m"]["max"] < 1e-3
    assert data["click_error_m"] < 0.05
    assert "voxel pooling, 0.2 m (released)" in (folder / "report.md").read_text()
