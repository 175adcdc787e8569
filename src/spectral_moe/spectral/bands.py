"""Frequency grids, band partitions and seeded position sampling for 2-D spectra.

A weight ``W ∈ R^{d_out×d_in}`` has a 2-D DFT spectrum indexed by ``(u, v)``, ``0 ≤ u < d_out``,
``0 ≤ v < d_in``. Positions are handled as flat indices ``p = u·d_in + v``.

Normalised radial frequency::

    ρ(u, v) = sqrt((ū/d_out)² + (v̄/d_in)²),   ū = min(u, d_out−u),  v̄ = min(v, d_in−v)

Conjugate pairs: ``(u, v)`` pairs with ``(−u mod d_out, −v mod d_in)``. A real ``ΔW`` has a
Hermitian spectrum, so only one representative of each pair is free. The *half-plane* is the set of
representatives (the member of each pair with the smaller flat index); self-conjugate positions
(``2u ≡ 0 mod d_out`` and ``2v ≡ 0 mod d_in``: DC and Nyquist corners) are excluded because their
coefficient would have to be real.

All functions are pure and deterministic; results are cached per argument tuple, so two layers of
one shape share the same tensors (never stored in checkpoints).
"""

from __future__ import annotations

from functools import lru_cache

import torch

BAND_LAYOUTS = ("radial", "uniform")


def radial_frequency(d_out: int, d_in: int) -> torch.Tensor:
    """ρ(u, v) on the full grid, shape ``(d_out, d_in)``, float64 (see module docstring)."""
    u = torch.arange(d_out, dtype=torch.float64)
    v = torch.arange(d_in, dtype=torch.float64)
    ubar = torch.minimum(u, d_out - u) / d_out
    vbar = torch.minimum(v, d_in - v) / d_in
    return torch.sqrt(ubar[:, None] ** 2 + vbar[None, :] ** 2)


def mirror_index(flat: torch.Tensor, d_out: int, d_in: int) -> torch.Tensor:
    """Flat index of the conjugate partner ``(−u mod d_out, −v mod d_in)`` of each flat index."""
    u = flat // d_in
    v = flat % d_in
    return ((-u) % d_out) * d_in + (-v) % d_in


@lru_cache(maxsize=64)
def half_plane(d_out: int, d_in: int) -> torch.Tensor:
    """Flat indices of one representative per conjugate pair, self-conjugate positions excluded.

    Returns a sorted int64 tensor of length ``(d_out·d_in − s)/2`` where ``s ∈ {1, 2, 4}`` is the
    number of self-conjugate positions.
    """
    flat = torch.arange(d_out * d_in, dtype=torch.int64)
    return flat[flat < mirror_index(flat, d_out, d_in)]


@lru_cache(maxsize=64)
def band_partition(d_out: int, d_in: int, num_bands: int, layout: str = "radial") -> torch.Tensor:
    """Split the half-plane into ``num_bands`` bands of equal count.

    ``layout="radial"``: positions sorted by ``ρ`` (ties broken by flat index), low to high, then
    cut into ``num_bands`` consecutive chunks of ``⌊H/num_bands⌋`` positions (``H`` = half-plane
    size; the ``H mod num_bands`` highest-frequency positions belong to no band).
    ``layout="uniform"``: every band is the whole half-plane.

    Returns an int64 tensor ``(num_bands, band_size)`` of flat indices.
    """
    if layout not in BAND_LAYOUTS:
        raise ValueError(f"band_layout must be one of {BAND_LAYOUTS}, got {layout!r}")
    if num_bands < 1:
        raise ValueError(f"num_experts must be >= 1, got {num_bands}")
    hp = half_plane(d_out, d_in)
    if layout == "uniform":
        return hp.unsqueeze(0).expand(num_bands, -1)
    rho = radial_frequency(d_out, d_in).flatten()[hp]
    order = torch.argsort(rho, stable=True)  # hp is sorted by flat index, so ties keep flat order
    size = hp.numel() // num_bands
    return hp[order[: size * num_bands]].view(num_bands, size)


def band_capacity(d_out: int, d_in: int, num_bands: int, layout: str = "radial") -> int:
    """Number of positions one band holds (the largest valid ``n_frequency``)."""
    hp = half_plane_size(d_out, d_in)
    return hp if layout == "uniform" else hp // num_bands


def half_plane_size(d_out: int, d_in: int) -> int:
    """``(d_out·d_in − s)/2`` with ``s`` = number of self-conjugate positions (1, 2 or 4)."""
    self_conj = (2 if d_out % 2 == 0 else 1) * (2 if d_in % 2 == 0 else 1)
    return (d_out * d_in - self_conj) // 2


@lru_cache(maxsize=64)
def sample_positions(
    d_out: int, d_in: int, num_experts: int, n_frequency: int, layout: str = "radial", seed: int = 777
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded positions of every expert: ``n_frequency`` distinct half-plane positions from its band.

    Sampling is one batched draw: ``torch.rand(Z, band_size, generator=seed).topk(n)`` picks ``n``
    distinct columns per band uniformly at random. Returns ``(rows, cols)``, each int64
    ``(num_experts, n_frequency)``, sorted by flat index within each expert.
    """
    capacity = band_capacity(d_out, d_in, num_experts, layout)
    if not 1 <= n_frequency <= capacity:
        raise ValueError(
            f"n_frequency must be in [1, {capacity}] for a {d_out}x{d_in} layer with {num_experts} experts "
            f"and band_layout={layout!r} (the positions one band holds), got {n_frequency}"
        )
    bands = band_partition(d_out, d_in, num_experts, layout)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.rand(bands.shape, generator=gen).topk(n_frequency, dim=-1).indices
    flat = torch.gather(bands, 1, pick).sort(dim=-1).values
    return flat // d_in, flat % d_in
