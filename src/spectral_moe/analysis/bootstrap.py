"""Paired bootstrap of the macro-average difference between two methods, over test examples and seeds.

Input: per task ``t`` a hit matrix per method, ``A_t`` of shape ``(S_a, n_t)`` and ``B_t`` of shape
``(S_b, n_t)`` (1 = the example was answered correctly by that seed's run, 0 = not), with column ``i``
the same test example for both methods (pair by example). The statistic is the macro difference::

    D = (1/T) Σ_t (1/n_t) Σ_i (ā_ti − b̄_ti),      ā_ti = (1/S_a) Σ_s A_t[s, i]   (b̄ likewise)

One bootstrap replicate resamples, in every task independently, ``n_t`` examples with replacement (the
same draw for both methods: paired), and with ``seeds="resample"`` first the seeds too:

``seeds="average"``  the runs are taken as fixed: ā, b̄ are the seed means and only examples are
                     resampled. The interval is about *these* trained models on the population of
                     examples.
``seeds="resample"`` each replicate also draws ``S`` seed indices with replacement, the same draw for both
                     methods when ``S_a == S_b`` (seed ``s`` of both shares data order and initialisation
                     of what they share, so seeds pair too), independent draws otherwise (e.g. the
                     untrained base model, ``S = 1``). This adds the training-seed variance; with few
                     seeds (3) it still underestimates it (the bootstrap variance of a mean of ``S``
                     values is ``(S − 1)/S`` of the plug-in one).

The interval is the percentile interval: the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the
replicates of ``D``.

Vectorised: with ``seeds="average"`` the per-example differences ``d_ti = ā_ti − b̄_ti`` take few distinct
values ``v_k`` (multiples of ``1/(S_a S_b)``), and resampling ``n_t`` of them uniformly is the same as
drawing the counts ``c ~ Multinomial(n_t, f_k / n_t)`` of each value (``f_k`` its frequency), so one
replicate of task ``t``'s mean is ``c · v / n_t``: an ``(R, K)`` draw per task, no loop over replicates.
With ``seeds="resample"`` the seed weights ``w ~ Multinomial(S, 1/S)`` make every replicate's ``d_t``
different, so the example counts are drawn as ``Multinomial(n_t, 1/n_t)`` in chunks of replicates
(``(chunk, n_t)`` arrays).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["BootstrapResult", "macro_difference", "paired_bootstrap"]

SEED_MODES = ("average", "resample")
_CHUNK_CELLS = 4_000_000  # replicates × examples per chunk with seeds="resample" (32 MB of float64)


@dataclass(frozen=True)
class BootstrapResult:
    """``difference``: the observed macro difference ``D`` (seed means); ``mean``: the replicates' mean;
    ``low``, ``high``: the percentile interval at ``level``; ``n_resamples`` replicates, ``seeds`` mode.
    Differences are fractions (0.01 = one point of accuracy)."""

    difference: float
    mean: float
    low: float
    high: float
    level: float
    n_resamples: int
    seeds: str

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (``low > 0`` or ``high < 0``)."""
        return self.low > 0 or self.high < 0


def _matrices(hits: Mapping[str, np.ndarray], tasks: list[str]) -> list[np.ndarray]:
    out = []
    for task in tasks:
        m = np.asarray(hits[task], dtype=np.float64)
        if m.ndim == 1:
            m = m[None, :]
        if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
            raise ValueError(f"hits of {task!r} must be (seeds, examples) with both >= 1, got {m.shape}")
        out.append(m)
    return out


def _check(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> tuple[list, list, list[str]]:
    if set(a) != set(b):
        raise ValueError(f"the two methods have different tasks: {sorted(a)} vs {sorted(b)}")
    if not a:
        raise ValueError("no tasks")
    tasks = sorted(a)
    ma, mb = _matrices(a, tasks), _matrices(b, tasks)
    for task, x, y in zip(tasks, ma, mb):
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"{task}: {x.shape[1]} examples vs {y.shape[1]}; pair the same examples in the same order"
            )
    return ma, mb, tasks


def macro_difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """``D = (1/T) Σ_t mean_i (ā_ti − b̄_ti)`` of hit matrices ``{task: (seeds, n_t)}`` (seed means)."""
    ma, mb, _ = _check(a, b)
    return float(np.mean([x.mean() - y.mean() for x, y in zip(ma, mb)]))


def _seed_weights(rng: np.random.Generator, r: int, s: int) -> np.ndarray:
    """``(r, s)`` bootstrap weights of ``s`` seeds: ``Multinomial(s, 1/s) / s`` per replicate."""
    return rng.multinomial(s, np.full(s, 1.0 / s), size=r) / s


def paired_bootstrap(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    *,
    n_resamples: int = 10_000,
    level: float = 0.95,
    seeds: str = "average",
    rng: int | np.random.Generator | None = 0,
) -> BootstrapResult:
    """Paired bootstrap of the macro difference ``D`` of ``a`` minus ``b`` (module docstring).

    ``a[task]``, ``b[task]``: hit matrices ``(S_a, n_t)``, ``(S_b, n_t)`` (a 1-d array is one seed), the
    same examples in the same column order. Replicates of task ``t`` (``R = n_resamples``)::

        average:   D*_t = c · v_t / n_t,  c ~ Multinomial(n_t, f_t / n_t)     (R, K_t)
        resample:  d*_ti = w_a · A_t[:, i] − w_b · B_t[:, i],  w ~ Multinomial(S, 1/S) / S   (R, n_t)
                   D*_t = (1/n_t) Σ_i u_i d*_ti,  u ~ Multinomial(n_t, 1/n_t)

    and ``D* = mean_t D*_t``. ``rng``: a seed or generator (the default 0 makes the result reproducible).
    """
    if seeds not in SEED_MODES:
        raise ValueError(f"seeds must be one of {list(SEED_MODES)}, got {seeds!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ma, mb, _ = _check(a, b)
    r = n_resamples
    total = np.zeros(r)
    for x, y in zip(ma, mb):
        n = x.shape[1]
        if seeds == "average":
            values, counts = np.unique(x.mean(0) - y.mean(0), return_counts=True)
            draws = gen.multinomial(n, counts / n, size=r)  # (R, K)
            total += draws @ values / n
            continue
        sa, sb = x.shape[0], y.shape[0]
        wa = _seed_weights(gen, r, sa)
        wb = wa if sa == sb else _seed_weights(gen, r, sb)
        chunk = max(1, _CHUNK_CELLS // n)
        for start in range(0, r, chunk):
            stop = min(r, start + chunk)
            d = wa[start:stop] @ x - wb[start:stop] @ y  # (chunk, n)
            u = gen.multinomial(n, np.full(n, 1.0 / n), size=stop - start)  # (chunk, n)
            total[start:stop] += (u * d).sum(1) / n
    replicates = total / len(ma)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(
        difference=macro_difference(a, b),
        mean=float(replicates.mean()),
        low=float(low),
        high=float(high),
        level=level,
        n_resamples=r,
        seeds=seeds,
    )
