"""Configuration of FRAME (DESIGN.md §4) and of its MoE-LoRA preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..moe_common import RoutedAdapterConfig, check_choice, check_int

TRANSFORMS = ("chirp", "hermite", "weighted")


@dataclass
class FrameConfig(RoutedAdapterConfig):
    """FRAME: top-k routed low-rank experts, each with a learnable fractional-Fourier order.

    Expert ``z`` has ``A_z ∈ R^{r×d_in}`` (Kaiming), ``B_z ∈ R^{d_out×r}`` (zeros) and an order
    ``a_z = order_max · sigmoid(θ_z)``::

        ΔW_z = (lora_alpha / r) · Re( 𝓕^{−a_z}_{d_out} B_z A_z 𝓕^{a_z}_{d_in} )

    ``a_z = 0`` is a plain LoRA expert; ``a_z = 1`` a rank-r update acting on the DFT of x.

    Args:
        r, lora_alpha, lora_dropout: LoRA rank, scale numerator and input dropout of each expert.
        transform: fractional Fourier transform: ``"weighted"`` (default; exact 4-term, O(d log d)),
            ``"chirp"`` (O(d log d) approximation) or ``"hermite"`` (exact eigenvector DFRFT, O(d²)
            apply and a d×d fp64 eigenbasis per width). The default comes from the study
            (results/study.md, ablations on smollm2-135m × suite:core, 2 seeds): macro accuracy
            weighted 27.7 ± 1.7, hermite 26.6 ± 1.1, chirp 25.0 ± 1.1, the same order on both seeds
            (paired Δ vs hermite +1.2 and −1.6 points: weak evidence, inside 2σ); weighted is also the
            fastest at these widths (FRAME step 33.9 vs 40.0 / 51.9 ms at 576², results/perf.md) and,
            unlike hermite, needs no d×d basis on 14336-wide layers.
        order_init: ``"spread"`` (orders evenly inside (0, 1): ``a_z = (z + ½)/Z``) or one number for
            every expert. With ``learn_order=True`` it must lie strictly inside (0, order_max): the
            real readout makes ΔW even in ``a``, so the order gradient vanishes at 0.
        order_max: upper end of the order range ``(0, order_max)``.
        learn_order: learn the orders (own optimizer group, see ``spectral_moe.optim``) or keep them fixed.
        init_lora_weights: ``True`` → ``B = 0`` (adapted model = base model at step 0); ``False`` →
            ``B`` random too (tests and ablations).
    """

    r: int = field(default=8, metadata={"help": "Rank of each expert."})
    lora_alpha: float = field(default=16.0, metadata={"help": "Scale numerator: ΔW carries lora_alpha / r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the expert input."})
    transform: str = field(default="weighted", metadata={"help": f"One of {list(TRANSFORMS)}."})
    order_init: str | float = field(
        default="spread", metadata={"help": "'spread' or one order for all experts."}
    )
    order_max: float = field(default=2.0, metadata={"help": "Orders live in (0, order_max)."})
    learn_order: bool = field(default=True, metadata={"help": "Train the orders (True) or keep them fixed."})
    init_lora_weights: bool = field(default=True, metadata={"help": "B starts at zero."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..._peft_registry import peft_type

        self.peft_type = peft_type("frame")
        check_int("r", self.r, 1)
        check_choice("transform", self.transform, TRANSFORMS)
        if not isinstance(self.order_max, (int, float)) or not self.order_max > 0:
            raise ValueError(f"order_max must be > 0, got {self.order_max!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.order_init, str):
            check_choice("order_init", self.order_init, ("spread",))
            if self.order_max < 1:
                raise ValueError(f"order_init='spread' needs order_max >= 1, got order_max={self.order_max}")
        elif self.learn_order and not 0 < self.order_init < self.order_max:
            raise ValueError(
                f"order_init must be 'spread' or a number in (0, order_max={self.order_max}) when learn_order "
                f"is True (the order gradient vanishes at 0), got {self.order_init!r}"
            )
        elif not 0 <= self.order_init <= self.order_max:
            raise ValueError(
                f"order_init must be in [0, order_max={self.order_max}], got {self.order_init!r}"
            )


@dataclass
class MoELoraConfig(FrameConfig):
    """The MoE-LoRA baseline: FRAME with every order fixed at 0 (a MixLoRA-style top-k MoE of LoRA experts).

    ``ΔW_z = (lora_alpha/r) · B_z A_z``; no transforms are computed. Saved adapters load back as a
    ``FrameConfig`` with the same values.
    """

    order_init: str | float = field(default=0.0, metadata={"help": "Fixed at 0: plain LoRA experts."})
    learn_order: bool = field(default=False, metadata={"help": "Orders stay fixed."})

    def __post_init__(self) -> None:
        if self.learn_order or self.order_init != 0:
            raise ValueError(
                "MoELoraConfig fixes every order at 0 (order_init=0.0, learn_order=False); use FrameConfig "
                f"for other orders, got order_init={self.order_init!r}, learn_order={self.learn_order!r}"
            )
        super().__post_init__()
