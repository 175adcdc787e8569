"""Temperature-based multi-task mixing."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from spectral_moe.data import Example, TaskData, mix_tasks, mixing_weights


def _task(name: str, n: int) -> TaskData:
    train = [Example(name, f"{name} {i}", (), str(i)) for i in range(n)]
    return TaskData(name, "free_form", train, [], [])


TASKS = [_task("a", 1000), _task("b", 300), _task("c", 100)]


def test_weights_formula():
    assert mixing_weights([1000, 300, 100], 1.0) == pytest.approx([1000 / 1400, 300 / 1400, 100 / 1400])
    assert mixing_weights([1000, 300, 100], math.inf) == pytest.approx([1 / 3] * 3)
    w2 = [math.sqrt(n) for n in (1000, 300, 100)]
    assert mixing_weights([1000, 300, 100], 2.0) == pytest.approx([x / sum(w2) for x in w2])
    assert mixing_weights([1000, 0, 100], math.inf) == pytest.approx([0.5, 0.0, 0.5])
    # small temperatures do not overflow
    assert mixing_weights([1000, 300], 0.01) == pytest.approx([1.0, 0.0], abs=1e-12)


def test_proportional_at_temperature_one():
    stream = mix_tasks(TASKS, temperature=1.0, num_samples=14000, seed=0)
    counts = Counter(e.task for e in stream)
    assert counts == {"a": 10000, "b": 3000, "c": 1000}


def test_uniform_at_infinite_temperature():
    stream = mix_tasks(TASKS, temperature=float("inf"), num_samples=3001, seed=0)
    counts = Counter(e.task for e in stream)
    assert sum(counts.values()) == 3001
    assert max(counts.values()) - min(counts.values()) <= 1
    # the small task is repeated, but every example is used before any repeats
    c = Counter(e.input for e in stream if e.task == "c")
    assert set(c) == {f"c {i}" for i in range(100)}
    assert max(c.values()) - min(c.values()) <= 1


def test_deterministic_and_seed_dependent():
    a = mix_tasks(TASKS, 2.0, 500, seed=3)
    assert a == mix_tasks(TASKS, 2.0, 500, seed=3)
    assert a != mix_tasks(TASKS, 2.0, 500, seed=4)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan")])
def test_rejects_non_positive_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        mix_tasks(TASKS, t, 10, seed=0)


def test_rejects_empty_inputs():
    with pytest.raises(ValueError):
        mix_tasks([_task("x", 0)], 1.0, 10, seed=0)
    with pytest.raises(ValueError):
        mix_tasks([], 1.0, 10, seed=0)
    with pytest.raises(ValueError):
        mix_tasks(TASKS, 1.0, -1, seed=0)
