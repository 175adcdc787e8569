"""Hermitian sparse spectra and the weight updates they define.

One cohesive thing (the dense reference, the FFT plan and its autograd Function share one notation),
so it stays one module though it is over 400 lines.

Notation (shapes in brackets): ``Z`` experts, ``n`` coefficients per expert, ``T`` tokens,
``M = d_out``, ``N = d_in``. Expert ``z`` owns positions ``(u_{z,j}, v_{z,j})`` (``rows``, ``cols``
[Z, n]) and complex coefficients ``c_{z,j}`` (real part [Z, n], optional imaginary part [Z, n]).

Hermitian spectrum of expert ``z`` (scatter-add, so repeated or self-conjugate positions add up)::

    F_z = ½ Σ_j ( c_{z,j} δ[u_{z,j}, v_{z,j}] + conj(c_{z,j}) δ[−u_{z,j}, −v_{z,j}] )      [M, N]

``F_z[−u, −v] = conj(F_z[u, v])`` by construction, hence ``IDFT2(F_z)`` is exactly real and::

    ΔW_z = scaling · IDFT2(F_z) = scaling · Re(IDFT2(Σ_j c_{z,j} δ[u_{z,j}, v_{z,j}]))     [M, N]

IDFT2 is ``torch.fft.ifft2`` ("backward" normalisation, 1/(MN)). The ½ makes the one-sided form on
the right exactly peft FourierFT's ``get_delta_weight`` for real ``c``, so FourierFT's ``scaling``
values carry over unchanged. The dense path computes it as ``irfft2`` of the ``N//2+1`` stored
columns of ``F_z`` (half the work and memory of ``ifft2``; exact because ``F_z`` is Hermitian).

Applying ``ΔW_z`` without forming it (``x`` real, ``R = rfft_N(x)`` [T, N//2+1])::

    X = ifft_N(x):  X[v] = conj(R[v])/N for v ≤ N/2,  X[v] = R[N−v]/N otherwise
    H_t[u] = Σ_z g_{t,z} Σ_{j: u_{z,j}=u} s·c_{z,j} X_t[v_{z,j}]                  [T, M]
    y_t = Re(ifft_M(H_t)) = irfft_M(G_t),  G_t[u] = ½(H_t[u] + conj(H_t[−u])),  u = 0..M/2

which equals ``Σ_z g_{t,z} ΔW_z x_t`` exactly (``s`` = scaling). Each term is ``w·D`` at row ``u``
with ``w = s·c/N`` and ``D ∈ {R[f], conj(R[f])}``, ``f = min(v, N−v)``. The term ``conj(w)·conj(D)``
at row ``−u`` has the same ``Re(ifft_M(·))``, so the *FFT plan* (``fft_plan``, built once per layer)
moves every term into the rows ``r ∈ [0, M/2]`` that ``irfft`` reads, and gathers ``D`` from
``S = [R, conj(R)]`` [T, 2(N//2+1)] so no data is ever conjugated per term::

    (w', D', r) = (conj(w), conj(D), M−u)  if u > M/2,  else (w, D, u);    i = index of D' in S
    c''_{z,j} = ρ_r · w'_{z,j},   ρ_r = 1 at r ∈ {0, M/2}, ½ elsewhere (irfft doubles interior rows)
    G_t[r] = Σ_z g_{t,z} Σ_j c''_{z,j} S_t[i_{z,j}] δ[r_{z,j}]                  [T, M//2+1]
    G_t[r] ← Re G_t[r]  at the self-conjugate rows r = 0 and (M even) r = M/2    (``real_edge_bins_``)
    y_t = irfft_M(G_t)                                                           [T, M]

complex-linear in ``S``: one gather, one multiply, one scatter-add per (token, expert, coefficient)
into a half-size ``G``, then one ``irfft``. At the self-conjugate rows ``½(H[r] + conj(H[−r])) =
Re H[r]``, so taking the real part there is the formula itself, not an approximation; it makes every
spectrum handed to ``irfft`` (forward and backward) Hermitian-consistent by construction, so the
result does not depend on what a backend does with those imaginary parts (CPU pocketfft drops them;
cuFFT's C2R assumes a Hermitian input and need not). Cost ``O(T)``: two strided writes, no extra
FFT. When ``top_k`` is given only the experts a token is routed to are visited (``T·k·n`` instead
of ``T·Z·n`` terms, indexed per (token, slot) pair).
``_SpectralMix`` carries the exact hand-written backward and saves only ``x``, the gates and ``c''``
(never a ``[T, Z·n]`` tensor; ``R`` is recomputed). Cost per token ``O(N log N + M log M + k·n)``.
FFTs run in float32 for half-precision inputs (torch has no bf16 FFT). Which of the two paths
(``apply_fft`` or ``apply_dense`` of ``dense_delta_weight``) is faster is predicted by
``spectral.cost_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fourier_fused import per_term, run_fused


def fft_dtype(dtype: torch.dtype) -> torch.dtype:
    """Real dtype the FFTs run in: float64 stays float64, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def input_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``rfft(x)`` along the feature axis in the FFT dtype, ``[..., d_in//2+1]`` complex."""
    return torch.fft.rfft(x.to(fft_dtype(x.dtype)), dim=-1)


def complex_coefficients(coef_real: torch.Tensor, coef_imag: torch.Tensor | None) -> torch.Tensor:
    """``c = coef_real + i·coef_imag`` ([Z, n] complex); ``coef_imag=None`` means real coefficients."""
    if coef_imag is None:
        coef_imag = torch.zeros_like(coef_real)
    return torch.complex(coef_real, coef_imag)


def half_hermitian_spectrum(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
) -> torch.Tensor:
    """Columns ``v = 0..N/2`` of ``F_z``, complex ``[Z, d_out, d_in//2+1]`` (all ``irfft2`` needs).

    A term ``½c`` at ``(u, v)`` is kept when ``v ≤ N/2``; its mirror ``½conj(c)`` at ``(−u, −v)``
    when ``(−v mod N) ≤ N/2``. Terms outside the stored half are written as zeros at index 0.
    """
    c = complex_coefficients(coef_real, coef_imag)
    num_experts = c.shape[0]
    half = d_in // 2 + 1
    mirror_cols = (-cols) % d_in
    keep, keep_mirror = cols < half, mirror_cols < half
    flat = torch.where(keep, rows * half + cols, 0)
    mirror = torch.where(keep_mirror, ((-rows) % d_out) * half + mirror_cols, 0)
    zero = torch.zeros((), dtype=c.dtype, device=c.device)
    spec = torch.zeros(num_experts, d_out * half, dtype=c.dtype, device=c.device)
    spec = spec.scatter_add(1, flat, torch.where(keep, 0.5 * c, zero))
    spec = spec.scatter_add(1, mirror, torch.where(keep_mirror, 0.5 * c.conj(), zero))
    return spec.view(num_experts, d_out, half)


def dense_delta_weight(
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    d_out: int,
    d_in: int,
    scaling: float,
) -> torch.Tensor:
    """Reference ``ΔW_z = scaling · IDFT2(F_z)``, real ``[Z, d_out, d_in]`` in the FFT dtype.

    Computed as ``irfft2`` of the stored half of ``F_z`` (``half_hermitian_spectrum``): ``F_z`` is
    Hermitian, so this equals ``ifft2(F_z)`` (whose imaginary part is zero up to rounding, tested).
    """
    dtype = fft_dtype(coef_real.dtype)
    spec = half_hermitian_spectrum(
        coef_real.to(dtype), None if coef_imag is None else coef_imag.to(dtype), rows, cols, d_out, d_in
    )
    return torch.fft.irfft2(spec, s=(d_out, d_in)) * scaling


@dataclass(frozen=True)
class FftPlan:
    """Index plan of the FFT path for fixed positions (module docstring), built once per layer.

    Per coefficient ``[Z, n]``: ``in_index`` (position of ``D`` in ``S = [R, conj(R)]``, in
    ``[0, 2·(N//2+1))``; the same index finds ``conj(D)`` in ``[conj(R), R]``), ``out_index``
    (row ``r`` in ``[0, M//2]``), ``conj_coef`` (the coefficient enters conjugated), ``rho`` (``½``, or
    ``1`` at rows 0 and M/2). ``grad_scale`` [M//2+1]: ``1/(M·ρ_r)``, turning ``rfft(∂L/∂y)`` into
    ``∂L/∂G``. ``*_flat``: the same indices flattened to ``[Z·n]``.
    """

    in_index: torch.Tensor
    out_index: torch.Tensor
    conj_coef: torch.Tensor
    rho: torch.Tensor
    grad_scale: torch.Tensor
    in_flat: torch.Tensor
    out_flat: torch.Tensor
    d_out: int
    d_in: int

    def to(self, device: torch.device) -> FftPlan:
        """The plan on ``device`` (itself when already there)."""
        if self.in_index.device == torch.device(device):
            return self
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return FftPlan(**moved, d_out=self.d_out, d_in=self.d_in)

    def real_vectors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rho, grad_scale, N·w)`` in ``dtype``, cast once per dtype (``w``: rfft's adjoint weights)."""
        cache = self.__dict__.setdefault("_casts", {})
        if dtype not in cache:
            d_in = self.d_in
            w = torch.full((d_in // 2 + 1,), 0.5 * d_in, dtype=torch.float64, device=self.rho.device)
            w[0] = d_in
            if d_in % 2 == 0:
                w[-1] = d_in
            cache[dtype] = (self.rho.to(dtype), self.grad_scale.to(dtype), w.to(dtype))
        return cache[dtype]

    def fused_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(in_mod, sign, edge)`` of ``spectral.fourier_fused`` (float32 ``sign``/``edge``), built once:
        ``in_mod = in_index mod (N//2+1)`` [Z, n], ``sign = −1`` where the term reads ``conj R`` else 1,
        ``edge`` [M//2+1] 0 at the self-conjugate rows 0 and M/2, else 1."""
        tables = self.__dict__.get("_fused")
        if tables is None:
            bins = self.d_in // 2 + 1
            sign = torch.where(self.in_index >= bins, -1.0, 1.0).to(self.rho.device)
            edge = torch.ones(self.d_out // 2 + 1, device=self.rho.device)
            edge[0 :: self.d_out // 2 if self.d_out % 2 == 0 else self.d_out] = 0.0
            tables = self.__dict__["_fused"] = ((self.in_index % bins).contiguous(), sign, edge)
        return tables


def fft_plan(rows: torch.Tensor, cols: torch.Tensor, d_out: int, d_in: int) -> FftPlan:
    """The ``FftPlan`` of positions ``rows``, ``cols`` [Z, n] (module docstring, "FFT plan")."""
    bins = d_in // 2 + 1
    data_conj = cols <= d_in // 2  # D = conj(R[f]) (else R[f])
    flip = rows > d_out // 2  # moved to row M − u, coefficient and data conjugated
    folded = torch.minimum(cols, d_in - cols)
    in_index = folded + bins * (data_conj ^ flip).long()
    out_index = torch.where(flip, d_out - rows, rows)
    edge = (out_index == 0) | ((d_out % 2 == 0) & (out_index == d_out // 2))
    rho = torch.where(edge, 1.0, 0.5).double()
    r = torch.arange(d_out // 2 + 1, device=rows.device)
    rho_rows = torch.where((r == 0) | ((d_out % 2 == 0) & (r == d_out // 2)), 1.0, 0.5).double()
    return FftPlan(
        in_index=in_index.contiguous(),
        out_index=out_index.contiguous(),
        conj_coef=flip.contiguous(),
        rho=rho,
        grad_scale=1.0 / (d_out * rho_rows),
        in_flat=in_index.reshape(-1).contiguous(),
        out_flat=out_index.reshape(-1).contiguous(),
        d_out=d_out,
        d_in=d_in,
    )


# Routed gathering (only the top-k experts of each token) pays when the routed share k/Z is at most
# this; measured by benchmarks/adapter_step.py (results/perf.md): at k/Z = 1/4 and 1/2 the routed
# gather was 1.5-6x faster than visiting every expert, per-pair index tensors included.
ROUTED_MAX_SHARE = 0.5


def uses_routed_gather(top_k: int | None, num_experts: int) -> bool:
    """Whether ``apply_fft`` visits only each token's ``top_k`` experts: ``top_k < Z`` and
    ``top_k/Z ≤ ROUTED_MAX_SHARE`` (``top_k=None``: arbitrary gates, every expert visited)."""
    return top_k is not None and top_k < num_experts and top_k / num_experts <= ROUTED_MAX_SHARE


def real_edge_bins_(half: torch.Tensor, n: int) -> torch.Tensor:
    """Zero in place ``Im`` of bin 0 and (``n`` even) bin ``n/2`` of ``half`` ``[..., n//2+1]``; returns it.

    These bins are self-conjugate (``−0 ≡ 0``, ``−n/2 ≡ n/2`` mod ``n``), so the half spectrum of a
    real length-``n`` signal is real there and ``irfft`` may assume it. The projection
    ``Π: half[k] ← Re half[k]`` (those ``k`` only) is real-linear and self-adjoint, so the backward
    applies the same ``Π``. ``O(T)``: one or two strided writes, no FFT.
    """
    # one strided view of both bins (0 and n/2 are n/2 apart in the n//2+1 bins): one write
    half.imag[..., 0 :: n // 2 if n % 2 == 0 else n].zero_()
    return half


def _doubled_spectrum(spec: torch.Tensor, swapped: bool = False) -> torch.Tensor:
    """``S = [R, conj(R)]`` ``[T, 2·(N//2+1)]`` (``[conj(R), R]`` = ``conj(S)`` when ``swapped``): every
    term gathers its data, or its conjugate, with the same index and without a per-term conjugation."""
    return torch.cat([spec.conj(), spec] if swapped else [spec, spec.conj()], dim=-1)


def _term_index(flat: torch.Tensor, table: torch.Tensor, experts: torch.Tensor | None) -> torch.Tensor:
    """Index of every term: the static ``flat`` [Z·n] (all experts) or ``table[experts]`` [T, k·n]."""
    return flat if experts is None else per_term(table, experts).flatten(1)


def _gather_terms(source: torch.Tensor, index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``source[t, index]`` per (token, expert or slot, coefficient), ``shape`` = ``[T, Z or k, n]``."""
    if index.dim() == 1:
        return source.index_select(1, index).view(shape)
    return source.gather(1, index).view(shape)


def _scatter_terms(target: torch.Tensor, index: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """``target[t, index] += terms`` in place (the adjoint of ``_gather_terms``)."""
    if index.dim() == 1:
        return target.index_add_(1, index, terms.flatten(1))
    return target.scatter_add_(1, index, terms.flatten(1))


def _mix(
    spec: torch.Tensor, coef: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor | None, plan: FftPlan
) -> torch.Tensor:
    """The forward of ``_SpectralMix``: ``y = irfft_M(G)`` [T, M] from ``R`` = ``spec`` [T, N//2+1], ``c''``
    = ``coef`` [Z, n], ``gates`` [T, Z] (or [T, k] at the ``experts`` [T, k] when routed).

    Called directly where no gradient is needed (inference: no autograd node, nothing saved)."""
    shape = (spec.shape[0], *gates.shape[1:], coef.shape[1])
    in_index = _term_index(plan.in_flat, plan.in_index, experts)
    terms = _gather_terms(_doubled_spectrum(spec), in_index, shape)
    terms.mul_(coef if experts is None else per_term(coef, experts))
    terms.mul_(gates.to(spec.real.dtype).unsqueeze(-1))
    half = torch.zeros(spec.shape[0], plan.d_out // 2 + 1, dtype=spec.dtype, device=spec.device)
    out_index = _term_index(plan.out_flat, plan.out_index, experts)
    half = real_edge_bins_(_scatter_terms(half, out_index, terms), plan.d_out)  # G, Hermitian-consistent
    return torch.fft.irfft(half, n=plan.d_out)


def _fused_tables(spec: torch.Tensor, coef: torch.Tensor, plan: FftPlan) -> tuple[torch.Tensor, ...]:
    """``(s_re, s_im, c_re, c_im, sign, in_mod, out_index)``: the arguments ``spectral.fourier_fused``'s
    two kernels share, from ``R`` = ``spec`` [T, N//2+1], ``c''`` = ``coef`` [Z, n] and the plan."""
    in_mod, sign, _ = plan.fused_tables()
    coef = coef.resolve_conj()
    parts = (spec.real, spec.imag, coef.real, coef.imag)
    return (*(t.contiguous() for t in parts), sign, in_mod, plan.out_index)


def _fused_mix(
    spec: torch.Tensor, coef: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor, plan: FftPlan
) -> torch.Tensor | None:
    """``_mix`` of the routed path by ``spectral.fourier_fused``'s compiled forward (None: not available)."""
    edge = plan.fused_tables()[2]
    half = run_fused("forward", *_fused_tables(spec, coef, plan), gates.to(spec.real.dtype), experts, edge)
    return None if half is None else torch.fft.irfft(torch.complex(*half), n=plan.d_out)


def _uses_fused(fused: bool, experts: torch.Tensor | None, spec: torch.Tensor) -> bool:
    """The fused kernels serve the routed path in float32 (float64 keeps the reference path)."""
    return fused and experts is not None and spec.dtype == torch.complex64


class _SpectralMix(torch.autograd.Function):
    """``y = irfft_M(G)``, ``G_t[r] = Σ g_{t,z} Σ_j c''_{z,j} S_t[i_{z,j}] δ[r_{z,j}]``, hand-written backward.

    ``S = [R, conj(R)]``, ``R = rfft(x)``; ``i``, ``r`` from the ``FftPlan``. ``irfft``'s adjoint gives
    ``dG = ∂L/∂G = Π(rfft(∂L/∂y)/(M·ρ_r))`` (torch's convention for complex tensors, ∂L/∂Re + i∂L/∂Im;
    ``Π`` = ``real_edge_bins_``, the forward's projection of rows 0 and M/2, is self-adjoint);
    with ``a = S[i]`` and ``P = dG[r] · conj(a)`` per (token, expert or slot, coefficient)::

        ∂L/∂g_{t,z}   = Re Σ_j P_{t,z,j} conj(c''_{z,j})      ∂L/∂c''_{z,j} = Σ_t g_{t,z} P_{t,z,j}
        ∂L/∂S_t[i]   += g_{t,z} dG_t[r] conj(c''_{z,j})       ∂L/∂R = ∂L/∂S[:N'] + conj(∂L/∂S[N':])
        ∂L/∂x         = N · irfft_N(Π(w ⊙ ∂L/∂R)),  w = 1 at bins 0 and N/2, ½ elsewhere  (rfft's adjoint)

    (``Π`` drops ``Im ∂L/∂R`` at bins 0 and N/2, where ``R`` is real for every real ``x``: exact, and it
    makes the backward's ``irfft`` input Hermitian-consistent too.)

    ``conj(a)`` is gathered with the same index from ``conj(S) = [conj(R), R]``. Saved: ``R``
    ``[T, N//2+1]`` (the input spectrum, about the size of ``x``), ``coef``, ``gates``, ``experts``;
    nothing of size ``[T, Z·n]`` is kept between forward and backward.

    ``fused``: the routed float32 path runs ``spectral.fourier_fused``'s compiled kernels instead
    (the same formulas in real arithmetic, fused; unfused if compiling is not possible here).
    """

    @staticmethod
    def forward(ctx, x, coef, gates, experts, spec, plan, fused=False):  # noqa: D102
        if spec is None:
            spec = input_spectrum(x)
        ctx.plan, ctx.routed, ctx.x_dtype = plan, experts is not None, x.dtype
        ctx.save_for_backward(spec, coef, gates, *((experts,) if ctx.routed else ()))
        ctx.fused = _uses_fused(fused, experts, spec)
        if ctx.fused:
            y = _fused_mix(spec, coef, gates, experts, plan)
            if y is not None:
                return y
            ctx.fused = False
        return _mix(spec, coef, gates, experts, plan)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):  # noqa: D102
        spec, coef, gates, *rest = ctx.saved_tensors
        experts = rest[0] if ctx.routed else None
        plan: FftPlan = ctx.plan
        need_x, need_coef, need_gates = ctx.needs_input_grad[:3]
        tokens, bins = spec.shape
        shape = (tokens, *gates.shape[1:], coef.shape[1])
        real_dtype = spec.real.dtype
        gates_r = gates.to(real_dtype).unsqueeze(-1)
        _, grad_scale, adjoint_weights = plan.real_vectors(real_dtype)
        grad_half = torch.fft.rfft(grad_y.to(real_dtype), dim=-1).mul_(grad_scale)
        real_edge_bins_(grad_half, plan.d_out)  # dG = Π(rfft(∂L/∂y)/(M·ρ)): Π is self-adjoint
        if ctx.fused:
            fused = _fused_backward(grad_half, spec, coef, gates_r.squeeze(-1), experts, plan)
            if fused is not None:
                d_spec, grad_gates, grad_coef = fused
                grad_x = None
                if need_x:
                    d_spec = real_edge_bins_(d_spec.mul_(adjoint_weights), plan.d_in)
                    grad_x = torch.fft.irfft(d_spec, n=plan.d_in, dim=-1).to(ctx.x_dtype)
                grad_gates = grad_gates.to(gates.dtype) if need_gates else None
                return grad_x, grad_coef if need_coef else None, grad_gates, None, None, None, None
        d_terms = _gather_terms(
            grad_half, _term_index(plan.out_flat, plan.out_index, experts), shape
        )  # dG[r]
        del grad_half
        in_index = _term_index(plan.in_flat, plan.in_index, experts)
        coef_conj = coef.conj().resolve_conj()
        coef_conj_b = coef_conj if experts is None else per_term(coef_conj, experts)  # conj(c'') per term
        grad_x = grad_coef = grad_gates = None
        if need_coef or need_gates:
            p = _gather_terms(_doubled_spectrum(spec, swapped=True), in_index, shape).mul_(d_terms)
            p_real = torch.view_as_real(p).flatten(-2)  # [T, k or Z, 2n]: (Re P, Im P) interleaved
            coef_pairs = torch.view_as_real(coef.resolve_conj()).flatten(-2)  # [Z, 2n], same interleaving
            if need_gates:  # Re Σ_j conj(c'')·P = Σ (Re c'' Re P + Im c'' Im P): one real GEMM
                if experts is None:
                    grad_gates = torch.einsum("tzm,zm->tz", p_real, coef_pairs)
                else:  # [T·k, 2n] @ [2n, Z] against every expert, then each pair's own column
                    every = p_real.reshape(-1, p_real.shape[-1]) @ coef_pairs.T
                    grad_gates = every.gather(1, experts.reshape(-1, 1)).view(experts.shape)
                grad_gates = grad_gates.to(gates.dtype)
            if need_coef:
                if experts is None:
                    summed = torch.einsum("tz,tzm->zm", gates_r.squeeze(-1), p_real)
                else:  # Σ over the (token, slot) pairs routed to z of g·P: rows added into expert z
                    weighted = p_real.mul_(gates_r).reshape(-1, p_real.shape[-1])
                    summed = torch.zeros_like(coef_pairs).index_add_(0, experts.reshape(-1), weighted)
                grad_coef = torch.view_as_complex(summed.view(*coef.shape, 2))
            del p
        if need_x:
            d_a = d_terms.mul_(coef_conj_b).mul_(gates_r)
            d_doubled = torch.zeros(tokens, 2 * bins, dtype=d_a.dtype, device=spec.device)
            d_doubled = _scatter_terms(d_doubled, in_index, d_a)
            d_spec = d_doubled[:, :bins].add_(d_doubled[:, bins:].conj()).mul_(adjoint_weights)
            real_edge_bins_(d_spec, plan.d_in)  # Im ∂L/∂R at bins 0, N/2 meets sin(0) = 0: no effect on x
            grad_x = torch.fft.irfft(d_spec, n=plan.d_in, dim=-1).to(ctx.x_dtype)
        return grad_x, grad_coef, grad_gates, None, None, None, None


def _fused_backward(
    grad_half: torch.Tensor,
    spec: torch.Tensor,
    coef: torch.Tensor,
    gates: torch.Tensor,
    experts: torch.Tensor,
    plan: FftPlan,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(∂L/∂R before rfft's adjoint weights, ∂g, ∂c'')`` by the compiled backward (None: unavailable)."""
    d_parts = (grad_half.real.contiguous(), grad_half.imag.contiguous())
    out = run_fused("backward", *d_parts, *_fused_tables(spec, coef, plan), gates, experts)
    if out is None:
        return None
    dr_re, dr_im, grad_gates, gc_re, gc_im = out
    return torch.complex(dr_re, dr_im), grad_gates, torch.complex(gc_re, gc_im)


def mixing_coefficients(
    coef_real: torch.Tensor, coef_imag: torch.Tensor | None, plan: FftPlan, scaling: float, dtype: torch.dtype
) -> torch.Tensor:
    """``c''_{z,j} = ρ_r · w'_{z,j}`` (module docstring), complex ``[Z, n]`` in the complex dtype of the
    real FFT dtype ``dtype``: ``w' = s·c/N``, conjugated where the plan moves the term to row ``M − u``."""
    c = complex_coefficients(coef_real.to(dtype), None if coef_imag is None else coef_imag.to(dtype))
    return torch.where(plan.conj_coef, c.conj(), c) * (plan.real_vectors(dtype)[0] * (scaling / plan.d_in))


def apply_fft(
    x: torch.Tensor,
    coef_real: torch.Tensor,
    coef_imag: torch.Tensor | None,
    rows: torch.Tensor,
    cols: torch.Tensor,
    gates: torch.Tensor,
    d_out: int,
    scaling: float,
    spectrum: torch.Tensor | None = None,
    top_k: int | None = None,
    plan: FftPlan | None = None,
    mixed: torch.Tensor | None = None,
    experts: torch.Tensor | None = None,
    fused: bool = False,
) -> torch.Tensor:
    """``Σ_z gates[..., z] · ΔW_z x`` by 1-D FFTs (module docstring), without any dense ``ΔW``.

    Args:
        x: real ``[..., d_in]``.
        coef_real, coef_imag: ``[Z, n]`` (``coef_imag`` None for real coefficients).
        rows, cols: int64 ``[Z, n]`` spectral positions.
        gates: ``[..., Z]`` router weights.
        spectrum: ``rfft(x)`` in the FFT dtype ``[..., d_in//2+1]`` when the caller already has it.
        top_k: the gates are zero outside each token's ``top_k`` largest (as the router makes
            them): only those experts are visited, when that pays (``ROUTED_MAX_SHARE``), and the
            gradient w.r.t. ``gates`` is computed at those positions only (the router's scatter
            discards the others). ``None``: any gates, every expert visited.
        plan: ``fft_plan(rows, cols, d_out, d_in)`` when the caller keeps it (built here otherwise).
        mixed: ``mixing_coefficients(coef_real, coef_imag, plan, scaling, fft_dtype(x.dtype))`` when
            the caller keeps it (inference: the coefficients did not change); no gradient reaches
            the coefficients through it.
        experts: int64 ``[..., top_k]``, each token's ``top_k`` experts when the caller has them (the
            router's ``topk_index``; the nonzero gates' positions), so they are not searched again;
            used only on the routed path (``top_k`` given).
        fused: run the routed float32 path by ``spectral.fourier_fused``'s compiled kernels (the same
            result to float32 rounding; the unfused path where compiling is not possible).
    Returns:
        ``[..., d_out]`` in the FFT dtype (float32, or float64 for float64 inputs).
    """
    dtype = fft_dtype(x.dtype)
    lead = x.shape[:-1]
    d_in = x.shape[-1]
    num_experts = coef_real.shape[0]
    if plan is None:
        plan = fft_plan(rows, cols, d_out, d_in)
    plan = plan.to(x.device)
    xt = x.reshape(-1, d_in)
    g = gates.reshape(-1, num_experts)
    spec = None if spectrum is None else spectrum.detach().reshape(-1, d_in // 2 + 1)

    c = mixing_coefficients(coef_real, coef_imag, plan, scaling, dtype) if mixed is None else mixed  # c''
    routed = None
    if uses_routed_gather(top_k, num_experts):
        routed = (
            g.detach().topk(top_k, dim=-1).indices
            if experts is None
            else experts.reshape(-1, experts.shape[-1])
        )
        g = g.gather(1, routed)
    if torch.is_grad_enabled() and (xt.requires_grad or c.requires_grad or g.requires_grad):
        y = _SpectralMix.apply(xt, c, g, routed, spec, plan, fused)  # [T, M]
    else:  # nothing to differentiate (inference): the same forward without an autograd node
        spec = input_spectrum(xt) if spec is None else spec
        y = _fused_mix(spec, c, g, routed, plan) if _uses_fused(fused, routed, spec) else None
        y = _mix(spec, c, g, routed, plan) if y is None else y
    return y.reshape(*lead, d_out)


def apply_dense(x: torch.Tensor, delta_weight: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """``Σ_z gates[..., z] · ΔW_z x`` from dense ``delta_weight`` ``[Z, d_out, d_in]``.

    One matmul against the stacked experts ``[Z·d_out, d_in]``, then the gate-weighted sum.
    ``delta_weight`` may be half precision (a ΔW kept in the autocast dtype): the gate-weighted sum
    still runs in float32 (``fft_dtype``), so a bf16 ``ΔW`` gives what autocast's bf16 matmul against
    the float32 ``ΔW`` gives.
    """
    num_experts, d_out, d_in = delta_weight.shape
    xt = x.to(delta_weight.dtype)
    per_expert = (xt @ delta_weight.reshape(num_experts * d_out, d_in).T).unflatten(-1, (num_experts, d_out))
    return (gates.to(fft_dtype(delta_weight.dtype)).unsqueeze(-1) * per_expert).sum(-2)


def log_band_energies(
    x: torch.Tensor, num_bands: int, eps: float = 1e-6, spectrum: torch.Tensor | None = None
) -> torch.Tensor:
    """Router features of the frequency-adaptive variant: ``log(ε + Σ_{v∈band b} |rfft(x)[v]|²/N)``.

    The ``N//2+1`` rfft bins of ``x [..., N]`` are cut into ``num_bands`` contiguous bands
    (edges ``round(linspace(0, bins, num_bands+1))``: sizes differ by at most one). Returns ``[..., num_bands]`` in the FFT dtype.
    ``spectrum`` is ``rfft(x)`` in the FFT dtype when the caller already has it.
    """
    dtype = fft_dtype(x.dtype)
    if spectrum is None:
        spectrum = torch.fft.rfft(x.to(dtype), dim=-1)
    power = spectrum.abs().square() / x.shape[-1]
    bins = power.shape[-1]
    bounds = torch.linspace(0, bins, num_bands + 1, device=x.device).round().long()
    band_id = torch.bucketize(torch.arange(bins, device=x.device), bounds[1:-1], right=True)
    energies = torch.zeros(*power.shape[:-1], num_bands, dtype=dtype, device=x.device)
    energies = energies.index_add(-1, band_id, power)
    return torch.log(energies + eps)
