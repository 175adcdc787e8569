"""Configuration of FlyLoRA (Zou et al., NeurIPS 2025), as read from the authors' code (``gfyddha/FlyLoRA``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from ..moe_common import BIAS_CHOICES, FORMAT_VERSION, check_choice, check_int

TOPK_SCORES = ("signed", "abs")


@dataclass
class FlyLoraConfig(PeftConfig):
    """FlyLoRA: a frozen sparse random ``A``, rank-wise top-k "experts", bias-only load balancing.

    Per adapted layer (``W0 ∈ R^{d_out×d_in}``)::

        A ∈ R^{r×d_in}   frozen, each row exactly p = ⌊density·d_in⌋ non-zeros ~ N(0, 1/r²) at seeded positions
        B ∈ R^{d_out×r}  trainable, zero init;   d ∈ R^r  routing bias, no gradient
        y = A x,   S = TopK_k(score(y + d)),   Δh = (lora_alpha / r) · B (y ⊙ 1_S)
        after each training forward:  d_i ← d_i + u · sign(mean_j c_j − c_i)

    ``c_i`` is the number of (non-padding) tokens whose top-k contains rank ``i``, pooled over
    data-parallel ranks. Defaults are the authors' MMLU script (``scripts/run_mmlu.sh``: r 32, α 64,
    top_k 8, bias_u 1e-3, lr 3e-4, dropout 0).

    Args:
        r: rank (the number of rank-wise experts).
        lora_alpha: scale numerator, ``Δh`` carries ``lora_alpha / r``.
        top_k: ranks active per token (``1 <= top_k <= r``).
        density: non-zeros per row of ``A`` as a fraction of ``d_in``, in (0, 1]; ``None`` → ``top_k / r``
            (the authors' default ``ρ = k/r``, exactly ``p = d_in·k // r``).
        bias_update_rate: ``u``, the step of the routing bias per training forward.
        topk_score: ``"signed"`` ranks ranks by ``y + d`` (the authors' peft fork, ``tuners/lora/layer.py``
            ``Linear.forward``, the code behind the paper's numbers: the default) or ``"abs"`` by ``|y + d|``
            (the reference file ``flylora.py``, ``FlyLoRALinear.forward``).
        projection_seed: seed of ``A`` (positions and values); combined with the module's name, so every
            layer has its own ``A``. ``A`` is re-derived from it, never stored in checkpoints; a fingerprint
            is stored and checked on load.
        lora_dropout: dropout on the layer input before ``A`` (as in the fork).
        stop_projection_gradient: ``True`` computes ``A x`` without autograd as the fork does (no gradient
            reaches the layer input through the adapter); ``False`` (default) differentiates the formula.
        init_lora_weights: ``True`` → ``B = 0`` (adapted model = base model at step 0); ``False`` → random B.
    """

    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names (list, suffix match) or one regex to adapt."}
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or a regex never to adapt."}
    )
    fan_in_fan_out: bool = field(
        default=False, metadata={"help": "True for layers storing (in, out) weights."}
    )
    bias: str = field(default="none", metadata={"help": "Which biases to train: 'none' or 'all'."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Extra modules trained in full."}
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only adapt these layer indices."}
    )
    layers_pattern: list[str] | str | None = field(default=None, metadata={"help": "Name of the layer list."})
    r: int = field(default=32, metadata={"help": "Rank = number of rank-wise experts."})
    lora_alpha: float = field(default=64.0, metadata={"help": "Scale numerator: Δh carries lora_alpha / r."})
    top_k: int = field(default=8, metadata={"help": "Ranks active per token."})
    density: float | None = field(
        default=None, metadata={"help": "Non-zeros per row of A / d_in; None: k/r."}
    )
    bias_update_rate: float = field(default=1e-3, metadata={"help": "Step u of the routing bias."})
    topk_score: str = field(default="signed", metadata={"help": f"One of {list(TOPK_SCORES)}."})
    projection_seed: int = field(default=777, metadata={"help": "Seed of the frozen sparse A."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the input of A."})
    stop_projection_gradient: bool = field(default=False, metadata={"help": "A x without autograd (fork)."})
    init_lora_weights: bool = field(default=True, metadata={"help": "B starts at zero."})
    format_version: int = field(default=FORMAT_VERSION, metadata={"help": "spectral-moe checkpoint format."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..peft_registry import peft_type

        self.peft_type = peft_type("flylora")
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, (list, tuple)):
            self.exclude_modules = set(self.exclude_modules)
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError("layers_to_transform cannot be used when target_modules is a regex string")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("layers_pattern requires layers_to_transform")
        check_choice("bias", self.bias, BIAS_CHOICES)
        check_int("r", self.r, 1)
        check_int("top_k", self.top_k, 1, self.r)
        check_int("projection_seed", self.projection_seed, 0)
        check_choice("topk_score", self.topk_score, TOPK_SCORES)
        if self.density is not None and (
            isinstance(self.density, bool)
            or not isinstance(self.density, (int, float))
            or not 0 < self.density <= 1
        ):
            raise ValueError(f"density must be None or a number in (0, 1], got {self.density!r}")
        if not isinstance(self.bias_update_rate, (int, float)) or not self.bias_update_rate >= 0:
            raise ValueError(f"bias_update_rate must be a number >= 0, got {self.bias_update_rate!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        check_int("format_version", self.format_version, 1)
        if self.format_version > FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is newer than this spectral-moe supports "
                f"({FORMAT_VERSION}); upgrade spectral-moe to load this adapter"
            )

    def nonzeros_per_row(self, in_features: int) -> int:
        """``p``: non-zeros per row of ``A`` for a layer with ``in_features`` inputs (at least 1)."""
        if self.density is None:
            return max(1, in_features * self.top_k // self.r)
        return max(1, min(in_features, int(self.density * in_features + 1e-9)))
