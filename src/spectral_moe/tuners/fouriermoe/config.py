"""Configuration of the FourierMoE adapter (DESIGN.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...spectral.bands import BAND_LAYOUTS
from ..moe_common import RoutedAdapterConfig, check_choice, check_int

FORWARD_MODES = ("auto", "fft", "dense")


@dataclass
class FourierMoEConfig(RoutedAdapterConfig):
    """FourierMoE: ``num_experts`` experts of sparse conjugate-symmetric Fourier coefficients, top-k routed.

    Expert ``z`` owns ``n_frequency`` seeded positions in its frequency band and complex coefficients
    ``c_z``; its update is ``ΔW_z = scaling · IDFT2(F_z)`` with ``F_z`` Hermitian (exactly real). A
    token's update is ``Σ_z g_z(x) ΔW_z x`` with the router's top-k gates ``g``.

    Args:
        n_frequency: coefficients per expert (each is one complex number, i.e. 2 real parameters
            when ``complex_coefficients``). Must fit in one band: at most ``⌊H/num_experts⌋`` for
            radial bands, ``H ≈ d_out·d_in/2``. The default 500 comes from the study's ablation
            (results/study.md; smollm2-135m × suite:core, 20 steps at the default learning rates,
            2 seeds): macro accuracy n=62 23.4 ± 0.0, n=125 26.2 ± 2.8, n=250 29.3 ± 0.6, n=500
            40.6 ± 4.4, monotone and n=500 higher on both seeds (paired Δ +11.3 points over 250).
            More coefficients also mean a larger update per step at a fixed ``scaling``, so part of
            this is a step-size effect.
        scaling: ``ΔW`` scale, FourierFT's convention (150 for encoders, ~300 for LLMs).
        random_loc_seed: seed of the positions (never stored in checkpoints).
        band_layout: ``"radial"`` (expert z gets the z-th equal-count ring of radial frequency) or
            ``"uniform"`` (all experts draw from the whole half-plane).
        complex_coefficients: complex (full phase) or real-only (FourierFT's even-phase restriction).
        forward_mode: ``"fft"`` (apply by 1-D FFTs), ``"dense"`` (build ΔW per expert) or ``"auto"``
            (a cost model picks per layer and call).
        init_weights: ``True`` → coefficients start at zero (adapted model = base model);
            ``False`` → standard normal (for tests and ablations).
        fused_kernels: run the FFT path's routed gather · multiply · scatter as two fused kernels
            compiled by ``torch.compile`` (``spectral.fourier_fused``; needs a C++ compiler on CPU,
            triton on CUDA; falls back to the unfused path with a warning where compiling fails).
            The same result to float32 rounding; the FFT path 1.0–1.7× faster per layer at smollm2's
            widths, training ~7 % faster end to end (bf16), after a one-time compile of ~4–8 s per
            layer shape (results/perf_bf16.md). Off by default: the compile time, and the compiler
            it needs.
    """

    n_frequency: int = field(default=500, metadata={"help": "Fourier coefficients per expert."})
    scaling: float = field(default=150.0, metadata={"help": "Scale of ΔW (FourierFT convention)."})
    random_loc_seed: int = field(default=777, metadata={"help": "Seed of the spectral positions."})
    band_layout: str = field(default="radial", metadata={"help": f"One of {list(BAND_LAYOUTS)}."})
    complex_coefficients: bool = field(
        default=True, metadata={"help": "Complex (True) or real coefficients."}
    )
    forward_mode: str = field(default="auto", metadata={"help": f"One of {list(FORWARD_MODES)}."})
    init_weights: bool = field(default=True, metadata={"help": "Zero-initialise the coefficients."})
    fused_kernels: bool = field(
        default=False, metadata={"help": "torch.compile the FFT path's gather/multiply/scatter (opt-in)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..peft_registry import peft_type

        self.peft_type = peft_type("fouriermoe")
        check_int("n_frequency", self.n_frequency, 1)
        check_int("random_loc_seed", self.random_loc_seed, 0)
        check_choice("band_layout", self.band_layout, BAND_LAYOUTS)
        check_choice("forward_mode", self.forward_mode, FORWARD_MODES)
        if not isinstance(self.fused_kernels, bool):
            raise ValueError(f"fused_kernels must be True or False, got {self.fused_kernels!r}")
        if not isinstance(self.scaling, (int, float)) or self.scaling != self.scaling:
            raise ValueError(f"scaling must be a finite number, got {self.scaling!r}")
