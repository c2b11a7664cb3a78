"""Response tuning in two CPU processes (gloo), the way ``accelerate launch`` runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import json
    import os
    import sys

    import torch

    from eightfold.instruct import builtin_instructions, preset, tune
    from eightfold.models import tiny_causal_lm
    from tests.instruct.conftest import build_bpe_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_bpe_tokenizer()
    model = tiny_causal_lm("llama", seed=0, vocab_size=len(tokenizer), num_hidden_layers=2)
    config = preset("tiny-cpu", max_steps=3, per_device_batch_size=2, effective_batch_size=4,
                    max_length=64, save_steps=3)
    result = tune(model, builtin_instructions()[:8], sys.argv[1], config=config,
                  tokenizer=tokenizer)
    rank = int(os.environ["RANK"])
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as handle:
        json.dump({"steps": result.steps, "world": os.environ["WORLD_SIZE"],
                   "history": result.history}, handle)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_tuning_in_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(script),
        str(run),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == "2" and r["steps"] == 3 for r in ranks)
    saved = json.loads((run / "model" / "tuning.json").read_text())
    assert saved["steps"] == 3
    assert (run / "checkpoints" / "checkpoint-3").is_dir()
