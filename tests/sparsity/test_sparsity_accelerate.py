"""MaskLLM under accelerate with two CPU processes (gloo): both ranks end with the same mask."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

WORKER = textwrap.dedent(
    """
    import os
    import sys
    import torch
    from safetensors.torch import save_file

    from eightfold.models import tiny_causal_lm
    from eightfold.sparsity import MaskLLM, check_nm

    torch.set_num_threads(1)
    model = tiny_causal_lm(num_hidden_layers=1)
    data = torch.randint(0, 256, (16, 16), generator=torch.Generator().manual_seed(0))
    logits = {}

    def keep_logits(entry):
        # Each rank sees other sequences and other Gumbel noise, so the logits stay equal
        # only if the gradients are averaged across processes.
        for name, module in model.named_modules():
            if hasattr(module, "logits"):
                logits[name + ".logits"] = module.logits.detach().clone()

    # No accelerator passed: the default one must notice the two processes on its own.
    result = MaskLLM(steps=3, batch_size=4, prior="magnitude",
                     callback=keep_logits).apply_(model, data)
    assert check_nm(model).ok
    rank = int(os.environ["RANK"])
    masks = {k: v.to(torch.uint8).contiguous() for k, v in result.masks.items()}
    masks.update(logits)
    save_file(masks, f"{sys.argv[1]}/rank{rank}.safetensors",
              metadata={"world": str(result.info["processes"]),
                        "loss": str(result.history[-1]["loss"])})
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_cpu_processes_agree_on_the_mask(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
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
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "rank0.safetensors"), framework="pt") as handle:
        assert handle.metadata()["world"] == "2"
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and rank0
    assert any(name.endswith(".logits") for name in rank0)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
