"""Configuration of FRAME (DESIGN.md §4) and of its MoE-LoRA preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...spectral.frame import EXPERT_MODES
from ..moe_common import RoutedAdapterConfig, check_choice, check_int

TRANSFORMS = ("chirp", "hermite", "weighted")
# checkpoint format from which FRAME routers have a logit bias by default (older configs load without)
ROUTER_BIAS_FORMAT = 2
# transforms whose orders learn (see FrameConfig): the others default to fixed orders
LEARNED_BY_DEFAULT = ("weighted",)


@dataclass
class FrameConfig(RoutedAdapterConfig):
    """FRAME: top-k routed low-rank experts, each with a fractional-Fourier order (learned or fixed).

    Expert ``z`` has ``A_z ∈ R^{r×d_in}`` (Kaiming), ``B_z ∈ R^{d_out×r}`` (zeros) and an order ``a_z``
    (one float32 scalar, the order itself: no sigmoid, no logit)::

        ΔW_z = (lora_alpha / r) · Re( 𝓕^{−a_z}_{d_out} B_z A_z 𝓕^{a_z}_{d_in} )

    ``a_z = 0`` is exactly a LoRA expert. ``a_z = 1`` is *not* "a rank-r update of the DFT of x": with
    ``𝓕^{−1} = J·𝓕`` (``J`` the parity ``x[n] → x[−n mod d]``) and real ``B A``, the real readout is
    ``Re(𝓕^{−1} B A 𝓕) = 𝓕^{−1} · ½(B A + J·B A·J) · 𝓕``: the parity-even part of ``B A`` seen in the
    Fourier domain, of rank ``≤ 2r``. ``ΔW`` is even and 4-periodic in ``a`` (``a`` and ``−a``, ``a + 4``
    give the same update), so ``[0, 2]`` covers every expert, and ``a = 0`` (and ``a = 2``) are
    stationary points of the order: an expert started there stays there.

    How the orders train depends on the transform (measured: ``results/frame_orders.md``):

    * ``weighted`` (a blend of ``I, 𝓕, J, 𝓕⁻¹`` with weights smooth in ``a``): ΔW changes by 2 % when
      the order moves by ``7.4e-3`` whatever the width; learned orders recover planted orders
      (``a* = 0.2, 0.7, 0.95`` from 0.5, to < 1e-3). Orders are learned by default.
    * ``hermite`` / ``chirp`` multiply Hermite mode ``m`` (up to ``d − 1``) by ``exp(−iπ·a·m/2)``: ΔW
      changes by 2 % for an order move of about ``0.03 / d`` (``5e-5`` at d = 576), the loss oscillates in
      ``a`` on that scale and a learned order does not leave its ``~1/d`` basin (planted ``a*`` is not
      recovered even 0.03 away). So by default their orders are *fixed* (``learn_order=None`` →
      ``False``) at the endpoint spread; ``learn_order=True`` trains them at ``0.027/d`` (chirp ``0.025/d``).

    Args:
        r, lora_alpha, lora_dropout: LoRA rank, scale numerator and input dropout of each expert.
        transform: fractional Fourier transform: ``"weighted"`` (default; exact 4-term, O(d log d)),
            ``"chirp"`` (O(d log d) approximation) or ``"hermite"`` (exact eigenvector DFRFT, O(d²)
            apply and a d×d fp64 eigenbasis per width). The default comes from the study
            (results/study.md, ablations on smollm2-135m × suite:core, 2 seeds): macro accuracy
            weighted 27.7 ± 1.7, hermite 26.6 ± 1.1, chirp 25.0 ± 1.1, the same order on both seeds
            (paired Δ vs hermite +1.2 and −1.6 points: weak evidence, inside 2σ; those hermite/chirp runs
            learned their orders at order_lr 1e-2, i.e. ~200× the step at which their ΔW stays put);
            weighted is also the fastest at these widths (FRAME step 33.9 vs 40.0 / 51.9 ms at 576²,
            results/perf.md) and, unlike hermite, needs no d×d basis on 14336-wide layers.
        order_init: ``"spread"``: the endpoints and evenly in between, ``a_z = z / (Z − 1)`` (``Z ≥ 2``:
            an order-0 LoRA expert and an order-1 spectral expert from step 0; ``Z = 1``: 0.5), or one
            number in ``[0, order_max]`` for every expert.
        order_max: largest allowed ``order_init`` (learned orders are not confined: every real order is
            a valid transform).
        learn_order: ``True``: learn the orders (own optimizer group, see ``spectral_moe.training.optim``);
            ``False``: fixed orders; ``None`` (default): ``True`` for ``weighted``, ``False`` for
            ``hermite`` and ``chirp`` (see above).
        router_bias: learnable per-expert bias ``b_r ∈ R^Z`` of the router logits,
            ``ℓ = W_r f(x) + b_r``, zero at initialisation (step 0 routes exactly as without it).
            ``None`` (default): ``True``, except for configs saved before checkpoint format 2
            (``format_version=1``: their routers have no bias tensor, and load unchanged). Without a bias,
            a linear router on zero-mean inputs cannot prefer one expert for every token: on a planted
            spatial target (4 experts, top-2, r = 1) every token then also reaches an expert at order
            1/3 … 1, which cannot fit a spatial update, and FRAME stays at ~1e-2 (weighted), 9e-2
            (hermite) and 0.11 (chirp) of the target's power; with the bias, 2e-4 … 6e-4 (1.8e-3 with
            the load-balancing loss at 0.01) (results/frame_orders.md). FourierMoE's default is False.
        expert_mode: how the token side meets the experts: ``"all"`` (every expert's low-rank matmuls for
            every token, the gates zeroing the unrouted ones: two dense matmuls), ``"routed"`` (only each
            token's ``top_k`` experts: tokens grouped by expert, ``torch._grouped_mm``; float32/bf16/fp16 with
            widths a multiple of 16 bytes, else all experts) or ``"auto"`` (default: the cost model
            ``spectral.frame.routed_is_cheaper`` decides per call from the shapes; no host sync). Both give
            the same output and gradients up to rounding. On the CPU routed pays off with many experts per
            routed one and wide experts: ``top_k = 2`` and ``k·(Z − 2) > 120``, ``k = r`` for MoE-LoRA and
            ``2r`` for FRAME (the default ``Z = 8``, ``r = 8``: all experts; ``Z = 16``, ``r = 8``: routed
            for FRAME, all for MoE-LoRA; results/perf_frame.md).
        init_weights / init_lora_weights: the same flag under two names (``init_weights`` as
            FourierMoE and peft's generic harness call it): ``True`` (default) → ``B = 0`` (adapted model
            = base model at step 0); ``False`` → ``B`` random too (tests and ablations). Giving both with
            different values is an error.
    """

    r: int = field(default=8, metadata={"help": "Rank of each expert."})
    lora_alpha: float = field(default=16.0, metadata={"help": "Scale numerator: ΔW carries lora_alpha / r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the expert input."})
    transform: str = field(default="weighted", metadata={"help": f"One of {list(TRANSFORMS)}."})
    order_init: str | float = field(
        default="spread", metadata={"help": "'spread' (0, ..., 1 evenly) or one order for all experts."}
    )
    order_max: float = field(default=2.0, metadata={"help": "Largest allowed order_init."})
    learn_order: bool | None = field(
        default=None,
        metadata={
            "help": "Train the orders (True), keep them fixed (False); None: True for 'weighted' only."
        },
    )
    router_bias: bool | None = field(
        default=None,
        metadata={"help": "Learnable router logit bias, zero-initialised; None: True (format_version >= 2)."},
    )
    expert_mode: str = field(
        default="auto",
        metadata={
            "help": f"One of {list(EXPERT_MODES)}: all experts per token, only the routed ones, or the cost model."
        },
    )
    init_lora_weights: bool | None = field(
        default=None, metadata={"help": "B starts at zero (default True)."}
    )
    init_weights: bool | None = field(default=None, metadata={"help": "Same as init_lora_weights."})

    def __post_init__(self) -> None:
        if self.router_bias is None:  # before the shared checks, which want a bool
            version = self.format_version
            self.router_bias = not isinstance(version, int) or version >= ROUTER_BIAS_FORMAT
        super().__post_init__()
        from ..peft_registry import peft_type

        self.peft_type = peft_type("frame")
        check_int("r", self.r, 1)
        check_choice("transform", self.transform, TRANSFORMS)
        check_choice("expert_mode", self.expert_mode, EXPERT_MODES)
        self._resolve_init_flag()
        if self.learn_order is None:
            self.learn_order = self.transform in LEARNED_BY_DEFAULT
        check_choice("learn_order", self.learn_order, (True, False, None))
        if not isinstance(self.order_max, (int, float)) or not self.order_max > 0:
            raise ValueError(f"order_max must be > 0, got {self.order_max!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.order_init, str):
            check_choice("order_init", self.order_init, ("spread",))
            if self.order_max < 1:
                raise ValueError(f"order_init='spread' needs order_max >= 1, got order_max={self.order_max}")
        elif isinstance(self.order_init, bool) or not isinstance(self.order_init, (int, float)):
            raise TypeError(f"order_init must be 'spread' or a number, got {self.order_init!r}")
        elif not 0 <= self.order_init <= self.order_max:
            raise ValueError(
                f"order_init must be 'spread' or a number in [0, order_max={self.order_max}], "
                f"got {self.order_init!r}"
            )

    def _resolve_init_flag(self) -> None:
        """``init_weights`` and ``init_lora_weights`` name one flag: resolve it (default True), or raise."""
        given = {
            k: getattr(self, k) for k in ("init_lora_weights", "init_weights") if getattr(self, k) is not None
        }
        for name, value in given.items():
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        if len(set(given.values())) > 1:
            raise ValueError(
                "init_weights and init_lora_weights are the same flag (B starts at zero); got "
                f"init_weights={self.init_weights!r} and init_lora_weights={self.init_lora_weights!r}"
            )
        value = next(iter(given.values()), True)
        self.init_lora_weights = self.init_weights = value


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
