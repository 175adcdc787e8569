"""Kill a training subprocess mid-run (and once mid-way through a checkpoint write), resume it: the
final adapter equals an uninterrupted run's, and the previous checkpoint stays loadable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from spectral_moe.training.trainer import last_checkpoint
from tests.helpers import save_tiny_llama, write_jsonl_task

CRASHER = Path(__file__).with_name("crash_on_save.py")

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
    _assert_same_adapter(full, cut)

    # killed in the middle of writing checkpoint-6: checkpoint-4 stays the one to resume from
    crashed = tmp_path / "crashed"
    proc = subprocess.run(
        [sys.executable, str(CRASHER), *_cmd(model, task, crashed)[3:]],
        env={**env, "CRASH_AT_STEP": "6", "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    ckpts = crashed / "checkpoints"
    assert (ckpts / "checkpoint-6").is_dir()  # the half-written one
    assert last_checkpoint(ckpts) == str(ckpts / "checkpoint-4")
    with pytest.raises(Exception):  # noqa: B017  (safetensors' own error for a truncated file)
        load_file(ckpts / "checkpoint-6" / "adapter_model.safetensors")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import spectral_moe  # noqa: F401

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), ckpts / "checkpoint-4")
    subprocess.run(_cmd(model, task, crashed, "--resume"), check=True, env=env, capture_output=True)
    _assert_same_adapter(full, crashed)


def _assert_same_adapter(run_a, run_b) -> None:
    a = load_file(run_a / "adapter" / "adapter_model.safetensors")
    b = load_file(run_b / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
