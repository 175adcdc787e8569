"""FRAME's factor math (``spectral/frame.py``) against an independent float64 reference.

The reference builds ``𝓕^a = Σ_k w_k(a) 𝓕^k`` from a dense DFT matrix ``F[m, n] = e^{−2πi mn/d}/√d`` and
``w_k(a) = ¼ Σ_m e^{−iπ m (a − k)/2}`` written out here (no code of ``spectral/frft.py``), then
``ΔW = s · Re(𝓕^{−a}_M B A 𝓕^{a}_N)``.
"""

from __future__ import annotations

import cmath
import math

import pytest
import torch

from spectral_moe.spectral.frame import (
    apply_lowrank_experts,
    dense_delta_weight,
    transformed_factors,
    weighted_real_coefficients,
    weighted_transformed_factors,
)
from spectral_moe.spectral.frft import frft, frft_transpose

ORDERS = [0.0, 1.0, 2.0, 3.0, 0.37, 1.5, -0.8, 4.9, 2.25]


def _weights(a: float) -> list[complex]:
    return [sum(cmath.exp(-1j * math.pi * m * (a - k) / 2) for m in range(4)) / 4 for k in range(4)]


def _frac_dft(d: int, a: float) -> torch.Tensor:
    """Dense ``𝓕^a`` [d, d] complex128: ``Σ_k w_k(a) F^k`` with ``F`` the unitary DFT matrix."""
    n = torch.arange(d, dtype=torch.float64)
    f = torch.exp(-2j * math.pi * torch.outer(n, n) / d) / math.sqrt(d)
    eye = torch.eye(d, dtype=torch.complex128)
    powers = [eye, f, f @ f, f @ f @ f]
    return sum(w * p for w, p in zip(_weights(a), powers, strict=True))


def _reference(lora_a: torch.Tensor, lora_b: torch.Tensor, orders: list[float]):
    """``(A' [Z, 2r, N], B' [Z, M, 2r], ΔW [Z, M, N])`` from dense matrices, float64."""
    d_in, d_out = lora_a.shape[-1], lora_b.shape[1]
    a2, b2, dw = [], [], []
    for z, a in enumerate(orders):
        at = lora_a[z].to(torch.complex128) @ _frac_dft(d_in, a)  # A 𝓕^a   [r, N]
        bt = _frac_dft(d_out, -a) @ lora_b[z].to(torch.complex128)  # 𝓕^{−a} B [M, r]
        a2.append(torch.cat([at.real, at.imag], dim=0))
        b2.append(torch.cat([bt.real, -bt.imag], dim=1))
        dw.append((bt @ at).real)
    return torch.stack(a2), torch.stack(b2), torch.stack(dw)


@pytest.mark.parametrize("shape", [(12, 10), (9, 7), (16, 5)])
def test_weighted_factors_match_the_dense_float64_reference(shape):
    d_out, d_in = shape
    gen = torch.Generator().manual_seed(d_out * 31 + d_in)
    z, r = len(ORDERS), 3
    lora_a = torch.randn(z, r, d_in, dtype=torch.float64, generator=gen)
    lora_b = torch.randn(z, d_out, r, dtype=torch.float64, generator=gen)
    orders = torch.tensor(ORDERS, dtype=torch.float64)
    a2, b2 = weighted_transformed_factors(lora_a, lora_b, orders)
    ref_a, ref_b, ref_dw = _reference(lora_a, lora_b, ORDERS)
    assert a2.shape == (z, 2 * r, d_in) and b2.shape == (z, d_out, 2 * r)
    torch.testing.assert_close(a2, ref_a, atol=1e-12, rtol=0)
    torch.testing.assert_close(b2, ref_b, atol=1e-12, rtol=0)
    torch.testing.assert_close(b2 @ a2, ref_dw, atol=1e-12, rtol=0)
    # and the generic entry point and the dense path agree with it
    a_gen, b_gen = transformed_factors(lora_a, lora_b, orders, "weighted")
    torch.testing.assert_close(b_gen @ a_gen, ref_dw, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        dense_delta_weight(lora_a, lora_b, orders, "weighted", 1.0), ref_dw, atol=1e-12, rtol=0
    )


def test_weighted_factors_equal_the_complex_frft_path():
    """The real-arithmetic path computes what ``frft`` (complex FFTs and the parity) computes."""
    gen = torch.Generator().manual_seed(3)
    lora_a = torch.randn(4, 2, 11, dtype=torch.float64, generator=gen)
    lora_b = torch.randn(4, 8, 2, dtype=torch.float64, generator=gen)
    orders = torch.tensor([0.1, 0.9, 1.3, 3.7], dtype=torch.float64)
    a2, b2 = weighted_transformed_factors(lora_a, lora_b, orders)
    at = frft_transpose(lora_a, orders[:, None], dim=-1, method="weighted")
    bt = frft(lora_b.transpose(-1, -2), -orders[:, None], dim=-1, method="weighted").transpose(-1, -2)
    torch.testing.assert_close(a2, torch.cat([at.real, at.imag], dim=-2), atol=1e-13, rtol=0)
    torch.testing.assert_close(b2, torch.cat([bt.real, -bt.imag], dim=-1), atol=1e-13, rtol=0)


def test_weighted_real_coefficients_are_the_real_parts_of_the_four_term_weights():
    orders = torch.tensor(ORDERS, dtype=torch.float64)
    coef = weighted_real_coefficients(orders)
    for z, a in enumerate(ORDERS):
        w0, w1, w2, w3 = _weights(a)
        expect = [
            [w0.real, w2.real, w1.real + w3.real, w3.imag - w1.imag],
            [w0.imag, w2.imag, w1.imag + w3.imag, w1.real - w3.real],
        ]
        torch.testing.assert_close(coef[z], torch.tensor(expect, dtype=torch.float64), atol=1e-14, rtol=0)


def test_weighted_factors_gradcheck():
    gen = torch.Generator().manual_seed(5)
    lora_a = torch.randn(2, 2, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    lora_b = torch.randn(2, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    orders = torch.tensor([0.3, 1.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(weighted_transformed_factors, (lora_a, lora_b, orders))


def test_weighted_factors_in_float32_and_bfloat16():
    """float32 factors: float32 math, within float32 rounding of float64; bf16 factors: float32 math, bf16 out."""
    gen = torch.Generator().manual_seed(7)
    lora_a = torch.randn(3, 4, 64, dtype=torch.float64, generator=gen)
    lora_b = torch.randn(3, 48, 4, dtype=torch.float64, generator=gen)
    orders = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    ref_a, ref_b, _ = _reference(lora_a, lora_b, orders.tolist())
    a32, b32 = weighted_transformed_factors(lora_a.float(), lora_b.float(), orders.float())
    assert a32.dtype == b32.dtype == torch.float32
    torch.testing.assert_close(a32.double(), ref_a, atol=2e-6, rtol=0)
    torch.testing.assert_close(b32.double(), ref_b, atol=2e-6, rtol=0)
    a16, b16 = weighted_transformed_factors(lora_a.bfloat16(), lora_b.bfloat16(), orders.float())
    assert a16.dtype == b16.dtype == torch.bfloat16
    torch.testing.assert_close(a16.float(), a32, atol=0.05, rtol=0.02)


def test_apply_lowrank_experts_is_the_gated_sum_of_expert_updates():
    gen = torch.Generator().manual_seed(11)
    z, r, d_in, d_out = 4, 3, 9, 7
    lora_a = torch.randn(z, r, d_in, dtype=torch.float64, generator=gen)
    lora_b = torch.randn(z, d_out, r, dtype=torch.float64, generator=gen)
    x = torch.randn(2, 5, d_in, dtype=torch.float64, generator=gen)
    gates = torch.rand(2, 5, z, dtype=torch.float64, generator=gen)
    gates[..., 1] = 0.0
    y = apply_lowrank_experts(x, lora_a, lora_b, gates, 0.5)
    expect = sum(gates[..., i : i + 1] * 0.5 * (x @ (lora_b[i] @ lora_a[i]).T) for i in range(z))
    torch.testing.assert_close(y, expect, atol=1e-12, rtol=0)
    # the [M, Z, k]-contiguous layout of the weighted factors gives the same result
    b_view = lora_b.permute(1, 0, 2).contiguous().permute(1, 0, 2)
    torch.testing.assert_close(apply_lowrank_experts(x, lora_a, b_view, gates, 0.5), y, atol=1e-13, rtol=0)


def test_weighted_factors_train_after_a_first_call_under_inference_mode():
    """The cached constants (coefficient map, parity index) built under ``inference_mode`` still serve autograd."""
    from spectral_moe.spectral import frame

    frame._weighted_real_map.cache_clear()
    frame._parity_index.cache_clear()
    lora_a, lora_b = torch.randn(2, 2, 13), torch.randn(2, 11, 2)
    orders = torch.tensor([0.2, 0.9])
    with torch.inference_mode():
        weighted_transformed_factors(lora_a, lora_b, orders)
    orders.requires_grad_(True)
    a2, b2 = weighted_transformed_factors(lora_a.requires_grad_(True), lora_b.requires_grad_(True), orders)
    (a2.sum() + b2.sum()).backward()
    assert orders.grad is not None and lora_a.grad is not None and lora_b.grad is not None


def test_routed_lowrank_experts_with_the_routers_experts_equals_searching_them():
    from spectral_moe.routing import route
    from spectral_moe.spectral.frame import (
        apply_lowrank_experts,
        apply_routed_lowrank_experts,
        routed_path_available,
    )

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=g)
    lora_a, lora_b = torch.randn(4, 4, 16, generator=g), torch.randn(4, 8, 4, generator=g)
    assert routed_path_available(x, lora_a, lora_b)  # the pinned torch has the grouped matmul on CPU
    routing = route(torch.randn(3, 5, 4, generator=g), 2)
    searched = apply_routed_lowrank_experts(x, lora_a, lora_b, routing.gates, 2, 0.5)
    given = apply_routed_lowrank_experts(x, lora_a, lora_b, routing.gates, 2, 0.5, routing.topk_index)
    assert torch.allclose(given, searched, atol=1e-6)
    assert torch.allclose(given, apply_lowrank_experts(x, lora_a, lora_b, routing.gates, 0.5), atol=1e-5)
    # the given index is what is computed: every gate positive, the two lowest-gate experts given
    dense = torch.rand(3, 5, 4, generator=g) + 0.1
    lowest = dense.topk(2, dim=-1, largest=False).indices
    only_lowest = torch.zeros_like(dense).scatter(-1, lowest, dense.gather(-1, lowest))
    y_lowest = apply_routed_lowrank_experts(x, lora_a, lora_b, dense, 2, 0.5, lowest)
    assert torch.allclose(y_lowest, apply_lowrank_experts(x, lora_a, lora_b, only_lowest, 0.5), atol=1e-5)
