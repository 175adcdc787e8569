"""The launch helpers of the multi-process tests: a hung worker fails with its stack, not a silent timeout."""

import subprocess
import sys
from pathlib import Path

from tests.training.distributed import WATCHDOG_ENV, worker_env


def test_watchdog_ends_a_hung_worker_with_its_stack(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        "import time\nfrom tests.training.distributed import watchdog\n\n"
        "def stuck_in_a_collective():\n    time.sleep(60)\n\nwatchdog()\nstuck_in_a_collective()\n"
    )
    env = {**worker_env(), WATCHDOG_ENV: "1"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "stuck_in_a_collective" in proc.stderr


def test_worker_env_is_cpu_only_single_threaded_and_imports_the_repository():
    env = worker_env()
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "1"
    assert Path(env["PYTHONPATH"], "tests", "training", "distributed.py").is_file()
