"""Every case of the EMOVA golden fixtures (authors' FSQ, unit extraction and unit strings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from eightfold.speech import (
    FSQ,
    U2S_NUM_SYMBOLS,
    U2S_SYMBOL_OFFSET,
    UnitExtractorHead,
    official_content_units,
    official_speech_token_string,
    official_u2s_symbol_ids,
    reduce_units,
    speech_tokens_to_units,
    unit_string,
    units_to_speech_tokens,
    units_to_symbol_ids,
)

ATOL = 1e-5  # the fixtures' README: bound, pre_quant_output and grad_z within 1e-5


@pytest.fixture(scope="module")
def emova_dir(golden_dir: Path) -> Path:
    path = golden_dir / "emova"
    if not (path / "cases.json").is_file():
        pytest.skip(f"{path} has no cases.json")
    return path


def _cases(emova_dir: Path, component: str) -> list[dict]:
    cases = json.loads((emova_dir / "cases.json").read_text())["cases"]
    return [c for c in cases if c["component"] == component]


def test_every_case_is_covered(emova_dir: Path) -> None:
    components = {
        c["component"] for c in json.loads((emova_dir / "cases.json").read_text())["cases"]
    }
    assert components <= {"fsq", "fsq_codebook", "unit_extraction", "unit_text"}


def test_fsq_cases(emova_dir: Path) -> None:
    cases = _cases(emova_dir, "fsq")
    assert cases
    for case in cases:
        data = np.load(emova_dir / case["arrays_file"])
        fsq = FSQ(case["levels"], eps=case["eps"])
        assert fsq.basis == [int(b) for b in case["basis"]], case["id"]
        assert fsq.codebook_size == case["codebook_size"], case["id"]
        z = torch.from_numpy(data["z"]).requires_grad_(True)
        np.testing.assert_allclose(
            fsq.bound(z).detach().numpy(), data["bound"], atol=ATOL, rtol=0, err_msg=case["id"]
        )
        codes = fsq(z)
        np.testing.assert_array_equal(codes.detach().numpy(), data["codes"], err_msg=case["id"])
        indices = fsq.codes_to_indices(codes)
        np.testing.assert_array_equal(indices.numpy(), data["indices"], err_msg=case["id"])
        np.testing.assert_array_equal(indices.numpy(), data["indices_float"].astype(np.int64))
        back = fsq.indices_to_codes(torch.from_numpy(data["indices_float"]))
        np.testing.assert_array_equal(back.numpy(), data["codes_from_indices"], err_msg=case["id"])
        if "grad_z" in data:
            (codes * torch.from_numpy(data["upstream_grad"])).sum().backward()
            np.testing.assert_allclose(
                z.grad.numpy(), data["grad_z"], atol=ATOL, rtol=0, err_msg=case["id"]
            )


def test_fsq_codebook_cases(emova_dir: Path) -> None:
    cases = _cases(emova_dir, "fsq_codebook")
    assert cases
    for case in cases:
        data = np.load(emova_dir / case["arrays_file"])
        fsq = FSQ(case["levels"])
        codes = fsq.indices_to_codes(torch.from_numpy(data["random_indices"]))
        np.testing.assert_array_equal(codes.numpy(), data["random_codes"], err_msg=case["id"])
        indices = fsq.codes_to_indices(torch.from_numpy(data["random_codes"]))
        np.testing.assert_array_equal(indices.numpy(), data["random_codes_to_indexes"])
        if "codebook" in data:
            np.testing.assert_array_equal(fsq.codebook.numpy(), data["codebook"])
            arange = fsq.indices_to_codes(torch.from_numpy(data["codebook_indices"]))
            np.testing.assert_array_equal(arange.numpy(), data["indexes_to_codes_arange"])


def test_unit_extraction_cases(emova_dir: Path) -> None:
    cases = _cases(emova_dir, "unit_extraction")
    assert cases
    for case in cases:
        data = np.load(emova_dir / case["arrays_file"])
        head = UnitExtractorHead(case["feature_dim"], case["levels"])
        head.load_state_dict(load_file(str(emova_dir / case["weights_file"])))
        features = torch.from_numpy(data["encoder_output"])
        lengths = torch.from_numpy(data["encoded_len"])
        with torch.no_grad():
            projected, codes, ids = head(features, lengths)
        np.testing.assert_allclose(projected.numpy(), data["pre_quant_output"], atol=ATOL, rtol=0)
        np.testing.assert_array_equal(codes.numpy(), data["codes"], err_msg=case["id"])
        np.testing.assert_array_equal(ids.numpy(), data["unit_ids"], err_msg=case["id"])

        reduced = head.unit_sequences(features, lengths)
        unreduced = head.unit_sequences(features, lengths, reduce=False)
        for item, red, unred in zip(case["items"], reduced, unreduced, strict=True):
            assert len(unred) == item["length"]
            assert unit_string(unred) == item["unreduced_unit_sequence"]
            assert unit_string(red) == item["reduced_unit_sequence"]
            assert units_to_speech_tokens(red) == item["speech_tokens_reduced"]
            assert units_to_speech_tokens(unred) == item["speech_tokens_unreduced"]
            assert units_to_speech_tokens(unred, reduce=True) == item["speech_tokens_reduced"]
            assert official_speech_token_string(unit_string(red)) == item["speech_tokens_reduced"]


def test_unit_text_items(emova_dir: Path) -> None:
    cases = _cases(emova_dir, "unit_text")
    assert cases
    for case in cases:
        assert case["u2s_symbol_offset"] == U2S_SYMBOL_OFFSET
        assert case["u2s_num_symbols"] == U2S_NUM_SYMBOLS
        for item in case["items"]:
            ids = item["unit_ids"]
            assert unit_string(ids) == item["unreduced_unit_sequence"]
            assert unit_string(reduce_units(ids)) == item["reduced_unit_sequence"]
            # The authors' renderer, quirk included (an empty sequence gives "<|speech_|>").
            for key, form in (
                ("speech_tokens_reduced", "reduced_unit_sequence"),
                ("speech_tokens_unreduced", "unreduced_unit_sequence"),
            ):
                assert official_speech_token_string(item[form]) == item[key]
            content = official_content_units(item["speech_tokens_reduced"])
            assert content == item["parsed_content_unit"]
            assert official_u2s_symbol_ids(content) == item["u2s_symbol_ids"]
            if ids:
                # Our strict API agrees with the authors wherever the input is valid...
                assert units_to_speech_tokens(reduce_units(ids)) == item["speech_tokens_reduced"]
                assert speech_tokens_to_units(item["speech_tokens_unreduced"]) == ids
                assert units_to_symbol_ids(reduce_units(ids)) == item["u2s_symbol_ids"]
            else:
                # ...and refuses the empty sequence the authors render as "<|speech_|>".
                with pytest.raises(ValueError, match="empty"):
                    units_to_speech_tokens(ids)
                assert units_to_speech_tokens(ids, allow_empty=True) == ""


def test_unit_text_parse_items(emova_dir: Path) -> None:
    for case in _cases(emova_dir, "unit_text"):
        for item in case.get("parse_items", []):
            content = official_content_units(item["llm_output"])
            assert content == item["parsed_content_unit"]
            if item["u2s_error"] is None:
                assert official_u2s_symbol_ids(content) == item["u2s_symbol_ids"]
            else:
                with pytest.raises(ValueError, match="not a unit symbol"):
                    official_u2s_symbol_ids(content)
