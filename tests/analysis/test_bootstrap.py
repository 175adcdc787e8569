"""analysis/bootstrap.py: the paired bootstrap of a macro difference, by hand and by simulation."""

import numpy as np
import pytest

from spectral_moe.analysis.bootstrap import macro_difference, paired_bootstrap


def test_macro_difference_by_hand():
    # task x: a's mean over seeds and examples (1+0+1 + 1+1+1)/6 = 5/6, b's 1/3 -> 1/2;
    # task y (1 example): 0 - 1 = -1; macro (1/2 - 1)/2
    a = {"x": [[1, 0, 1], [1, 1, 1]], "y": [[0], [0]]}
    b = {"x": [[1, 0, 0]], "y": [[1]]}
    assert macro_difference(a, b) == pytest.approx(-0.25)


def test_two_example_task_has_the_hand_computed_replicate_distribution():
    # d = [1, 0]: a resample of 2 has mean 0 (p 1/4), 1/2 (p 1/2) or 1 (p 1/4)
    a, b = {"t": np.array([1, 0])}, {"t": np.array([0, 0])}
    res = paired_bootstrap(a, b, n_resamples=40_000, rng=1)
    assert res.difference == 0.5
    assert res.mean == pytest.approx(0.5, abs=0.01)
    assert (res.low, res.high) == (0.0, 1.0)
    assert not res.resolved
    # every example answered the same way by both: no variation at all
    same = paired_bootstrap({"t": np.ones(5)}, {"t": np.zeros(5)}, n_resamples=100)
    assert (same.difference, same.low, same.high) == (1.0, 1.0, 1.0)
    assert same.resolved


def test_pairing_removes_the_shared_example_difficulty():
    # b = a with one example flipped to wrong: the paired difference is tiny but certain in sign
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(1, 400))
    b = a.copy()
    b[0, np.flatnonzero(a[0])[:8]] = 0
    res = paired_bootstrap({"t": a}, {"t": b}, n_resamples=5000)
    assert res.difference == pytest.approx(8 / 400)
    assert res.low >= 0 and res.high > 0  # unpaired, a 2-point gap at n=400 would be far from resolved


def test_category_trick_matches_brute_force_resampling():
    rng = np.random.default_rng(3)
    a = {"x": rng.integers(0, 2, (3, 50)), "y": rng.integers(0, 2, (3, 20))}
    b = {"x": rng.integers(0, 2, (3, 50)), "y": rng.integers(0, 2, (3, 20))}
    res = paired_bootstrap(a, b, n_resamples=20_000, rng=4)
    brute = []
    for _ in range(4000):
        per = []
        for t in ("x", "y"):
            d = np.mean(a[t], 0) - np.mean(b[t], 0)
            per.append(d[rng.integers(0, d.size, d.size)].mean())
        brute.append(np.mean(per))
    lo, hi = np.quantile(brute, [0.025, 0.975])
    assert res.low == pytest.approx(lo, abs=0.015)
    assert res.high == pytest.approx(hi, abs=0.015)


def test_resampling_seeds_widens_the_interval_when_seeds_disagree():
    # every seed of a is 1 on half the examples, but which half depends on the seed
    n = 300
    a = np.zeros((3, n))
    a[0, :150], a[1, 150:], a[2, :150] = 1, 1, 1
    b = np.full((3, n), 0.5) > np.arange(n) % 2  # half right, fixed
    avg = paired_bootstrap({"t": a}, {"t": b.astype(float)}, n_resamples=3000, seeds="average")
    res = paired_bootstrap({"t": a}, {"t": b.astype(float)}, n_resamples=3000, seeds="resample")
    assert res.high - res.low > avg.high - avg.low
    # one seed of the base model against three: independent seed draws, still well defined
    base = paired_bootstrap({"t": a}, {"t": b[:1].astype(float)}, n_resamples=500, seeds="resample")
    assert base.low <= base.difference <= base.high


def _simulate(rng, delta, tasks=3, n=300, seeds=3):
    """Per-example difficulty p_i shared by both methods; a's hit rate shifted by ``delta``."""
    a, b = {}, {}
    for t in range(tasks):
        p = rng.uniform(0.2, 0.8, n)
        a[t] = (rng.random((seeds, n)) < np.clip(p + delta, 0, 1)).astype(float)
        b[t] = (rng.random((seeds, n)) < p).astype(float)
    return a, b


@pytest.mark.parametrize("seeds", ["average", "resample"])
def test_planted_difference_is_resolved(seeds):
    rng = np.random.default_rng(5)
    a, b = _simulate(rng, delta=0.08)
    res = paired_bootstrap(a, b, n_resamples=2000, seeds=seeds, rng=6)
    assert res.resolved and res.low > 0
    assert res.low < 0.08 < res.high


def test_no_difference_is_covered_about_95_percent_of_the_time():
    # 200 repeats of a null experiment: coverage ~ Binomial(200, 0.95)/200, sd 1.5 points
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        a, b = _simulate(rng, delta=0.0, tasks=2, n=200, seeds=1)
        res = paired_bootstrap(a, b, n_resamples=1000, rng=rng)
        covered += res.low <= 0 <= res.high
    assert 0.90 <= covered / 200 <= 0.99


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="different tasks"):
        paired_bootstrap({"x": [1]}, {"y": [1]})
    with pytest.raises(ValueError, match="pair the same examples"):
        paired_bootstrap({"x": [1, 0]}, {"x": [1]})
    with pytest.raises(ValueError, match="seeds must be"):
        paired_bootstrap({"x": [1]}, {"x": [1]}, seeds="both")
