"""Kill a training subprocess mid-run, resume it: the final adapter equals an uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from tests.helpers import save_tiny_llama, write_jsonl_task

STEPS = 12


def _cmd(model, task, out, *extra):
    return [
        sys.executable,
        "-m",
        "spectral_moe.cli",
        "train",
        "--method",
        "frame",
        "--model",
        model,
        "--tasks",
        f"jsonl:{task}",
        "--steps",
        str(STEPS),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "save_steps=2",
        "--set",
        "logging_steps=1",
        "--set",
        "batch_size=4",
        "--set",
        "eval_base=false",
        "--set",
        "adapter.num_experts=4",
        "--set",
        "adapter.r=2",
        *extra,
    ]


def test_killed_run_resumes_to_the_same_adapter(tmp_path):
    model = save_tiny_llama(tmp_path / "model")
    task = write_jsonl_task(tmp_path / "task.jsonl", n=60)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}

    full = tmp_path / "full"
    subprocess.run(_cmd(model, task, full), check=True, env=env, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        _cmd(model, task, cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (cut / "checkpoints" / "checkpoint-4").exists():
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    killed_mid_run = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed_mid_run, "the run finished before it could be killed"
    assert not (cut / "adapter").exists()

    subprocess.run(_cmd(model, task, cut, "--resume"), check=True, env=env, capture_output=True)
    a = load_file(full / "adapter" / "adapter_model.safetensors")
    b = load_file(cut / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
