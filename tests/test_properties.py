"""Property tests over random layer shapes, dtypes, experts, top-k, band layouts and transforms.

Default suite: 300 generated cases per adapter (derandomized, so CI sees the same cases every run);
``pytest --slow`` runs 10x more.
"""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectral_moe import FourierMoEConfig, FrameConfig
from spectral_moe.spectral.bands import band_capacity
from spectral_moe.tuners.fouriermoe import FourierMoELinear
from spectral_moe.tuners.frame import FrameLinear

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# fp64 contract tolerance as the issues require; lower precisions are bounded by their rounding
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 6e-2, torch.float16: 1e-2}


def _cases(slow: bool) -> settings:
    return settings(
        max_examples=3000 if slow else 300,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SLOW = pytest.mark.slow


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _contract(layer, x):
    gates = layer.router_weights("default", x.to(torch.float32) if x.dtype in DTYPES[2:] else x)
    out = 0
    for z in range(gates.shape[-1]):
        dw = layer.get_delta_weight("default", z).double()
        out = out + gates[..., z : z + 1].double() * (x.double() @ dw.T)
    return out


@st.composite
def fouriermoe_case(draw):
    d_out = draw(st.integers(4, 24))
    d_in = draw(st.integers(4, 24))
    layout = draw(st.sampled_from(["radial", "uniform"]))
    max_experts = max(1, min(6, (d_out * d_in - 4) // 2))
    experts = draw(st.integers(1, max_experts))
    cap = band_capacity(d_out, d_in, experts, layout)
    if cap < 1:
        experts = 1
        cap = band_capacity(d_out, d_in, 1, layout)
    return dict(
        d_out=d_out,
        d_in=d_in,
        layout=layout,
        experts=experts,
        top_k=draw(st.integers(1, experts)),
        n=draw(st.integers(1, min(cap, 12))),
        complex_=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        tokens=draw(st.integers(1, 9)),
        seed=draw(st.integers(0, 2**16)),
    )


def _check_fouriermoe(case):
    torch.manual_seed(case["seed"])
    dtype = case["dtype"]
    layers = {}
    for mode in ("fft", "dense"):
        cfg = FourierMoEConfig(
            target_modules=["x"],
            num_experts=case["experts"],
            top_k=case["top_k"],
            n_frequency=case["n"],
            band_layout=case["layout"],
            complex_coefficients=case["complex_"],
            forward_mode=mode,
            init_weights=False,
            scaling=1.0,
        )
        base = torch.nn.Linear(case["d_in"], case["d_out"]).to(dtype)
        layers[mode] = FourierMoELinear(base, "default", cfg)
    layers["dense"].load_state_dict(layers["fft"].state_dict())
    x = torch.randn(case["tokens"], case["d_in"]).to(dtype)
    base_out = layers["fft"].get_base_layer()(x)
    y_fft, y_dense = layers["fft"](x), layers["dense"](x)
    assert y_fft.dtype == dtype and torch.isfinite(y_fft).all() and torch.isfinite(y_dense).all()
    delta_fft, delta_dense = (y_fft - base_out).double(), (y_dense - base_out).double()
    tol = TOL[dtype]
    if dtype in (torch.bfloat16, torch.float16):
        # the adapter runs in float32 and is rounded once when added to the half-precision output
        scale = y_fft.double().abs().max().item() + 1e-12
        assert (delta_fft - delta_dense).abs().max().item() <= tol * scale
        return
    assert _rel(delta_fft, delta_dense) < tol
    assert _rel(delta_fft, _contract(layers["fft"], x)) < tol


@given(fouriermoe_case())
@_cases(slow=False)
def test_fouriermoe_properties(case):
    _check_fouriermoe(case)


@SLOW
@given(fouriermoe_case())
@_cases(slow=True)
def test_fouriermoe_properties_slow(case):
    _check_fouriermoe(case)


@st.composite
def frame_case(draw):
    experts = draw(st.integers(1, 5))
    return dict(
        d_out=draw(st.integers(2, 20)),
        d_in=draw(st.integers(2, 20)),
        experts=experts,
        top_k=draw(st.integers(1, experts)),
        r=draw(st.integers(1, 4)),
        transform=draw(st.sampled_from(["chirp", "hermite", "weighted"])),
        dtype=draw(st.sampled_from(DTYPES)),
        tokens=draw(st.integers(1, 9)),
        seed=draw(st.integers(0, 2**16)),
    )


def _check_frame(case):
    torch.manual_seed(case["seed"])
    dtype = case["dtype"]
    cfg = FrameConfig(
        target_modules=["x"],
        num_experts=case["experts"],
        top_k=case["top_k"],
        r=case["r"],
        transform=case["transform"],
        init_lora_weights=False,
    )
    # built in float32 then cast, as a user casts a model: orders and router must survive the cast
    layer = FrameLinear(torch.nn.Linear(case["d_in"], case["d_out"]), "default", cfg).to(dtype)
    x = torch.randn(case["tokens"], case["d_in"]).to(dtype)
    y = layer(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    if dtype in (torch.bfloat16, torch.float16):
        # orders and router stay float32; the adapter's output matches a float64 copy of the same
        # parameters up to the half-precision rounding of the transformed factors and of the output
        assert layer.frame_orders("default").dtype == torch.float32
        if case["experts"] > 1:
            assert layer.frame_router["default"].weight.dtype == torch.float32
        ref = copy.deepcopy(layer).double()
        with torch.no_grad():
            expected = ref(x.double()) - ref.get_base_layer()(x.double())
        delta = y.double() - layer.get_base_layer()(x).double()
        scale = y.double().abs().max().item() + 1e-12
        assert (delta - expected).abs().max().item() <= TOL[dtype] * scale
        return
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert _rel(y - layer.get_base_layer()(x), _contract(layer, x)) < tol


@given(frame_case())
@_cases(slow=False)
def test_frame_properties(case):
    _check_frame(case)


@SLOW
@given(frame_case())
@_cases(slow=True)
def test_frame_properties_slow(case):
    _check_frame(case)
