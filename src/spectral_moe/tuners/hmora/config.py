"""Configuration of HMoRA (Liao et al., ICLR 2025), as read from the authors' code (``LiaoMengqi/HMoRA``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..moe_common import RoutedAdapterConfig, check_choice, check_int

ROUTING_MODES = ("hybrid", "token", "task")
AUX_REDUCTIONS = ("sum", "mean")


@dataclass
class HMoRAConfig(RoutedAdapterConfig):
    """HMoRA: LoRA experts with hybrid token/task routing whose mix varies with depth.

    Layer ``l`` of ``L`` (``L`` = the last layer index, as ``max_llm_layer`` in ``hmora/model.py``)::

        p_tok = softmax(W_tok dropout(h))           [..., E]   token router (nn.Linear with bias)
        p_task = softmax(W_task dropout(s))         [B, E]     task router on the task representation s
        α_l = σ(θ_l),  θ_l init = ε·(2l/L − 1) + shift       learnable (``TokenRouter.__init__``)
        G = (1 − α_l)·p_tok + α_l·p_task            then top-k and softmax over the kept values
        Δh = (lora_alpha / √r) · Σ_e G_e · B_e A_e dropout(h)

    A layer whose initial ``σ(θ_l)`` is below ``alpha_low_bound`` uses the token router only, above
    ``alpha_up_bound`` the task router only (``routing="hybrid"``); ``"token"``/``"task"`` use one router
    everywhere. The auxiliary loss (``router_aux_loss_coef`` = the authors' ``lambda_auxiliary``) is
    :func:`spectral_moe.tuners.hmora.layer.entropy_balance_loss` per router, summed (the authors') or
    averaged over routers.

    Defaults follow the authors' ``run_train.sh`` (8 experts, top-2, r 8, α 8, dropout 0.1, ε 2, γ_b 0.98,
    γ_c 0.5, λ 0.005, lr 5e-5) and ``train.py`` (α bounds 0.2 / 0.8); the lightweight switches
    (``share_router_qkv``, ``share_router_ffn``, ``shared_lora_a`` = their "hydra" LoRA, ``lora_modules``)
    are off, as in ``hmora/config.py``. Their run turns all of them on with ``lora_modules=["o_proj",
    "down_proj"]``.

    Args:
        r, lora_alpha: rank of each expert and scale numerator (rsLoRA: ``Δh`` carries ``lora_alpha/√r``).
        dropout: dropout on the expert input, the routers' inputs and inside the task encoder.
        routing: ``"hybrid"`` (the α schedule), ``"token"`` or ``"task"``.
        top_k_routing: keep the top-k of ``G`` and re-softmax them (the authors' ``top_k_routing_strategy``);
            ``False`` uses ``G`` itself on every expert.
        alpha_epsilon, alpha_shift, alpha_low_bound, alpha_up_bound: the α schedule and its bounds.
        aux_gamma_balance, aux_gamma_certain: γ_b and γ_c of the auxiliary loss.
        aux_reduce: ``"sum"`` (the authors') or ``"mean"`` of the per-router losses.
        share_router_qkv: one router for the ``q_proj``/``k_proj``/``v_proj`` of a layer.
        share_router_ffn: one router for the ``gate_proj``/``up_proj`` of a layer.
        shared_lora_a: all experts of a layer share one ``A`` (``r×d_in``); their ``B`` differ.
        lora_modules: module names (suffix match) that get one plain rsLoRA instead of experts.
        task_token_id: the token whose input embedding initialises the task token (the authors use ``"?"``:
            ``tokenizer.convert_tokens_to_ids("?")``); required when a task router exists.
        task_encoder_layers, task_encoder_heads, task_encoder_ffn_mult: the task encoder (a post-norm
            ``nn.TransformerEncoderLayer`` stack: 1 layer, 16 heads, FFN ``2·hidden`` in the authors').
        train_task_encoder: train the encoder (the authors' ``trainable_encoder``); the task token and
            routers train regardless.
        init_lora_weights: ``True`` → ``B = 0``; ``False`` → random ``B`` (tests).
    """

    num_experts: int = field(default=8, metadata={"help": "LoRA experts per layer."})
    top_k: int = field(default=2, metadata={"help": "Experts kept per token."})
    router_aux_loss_coef: float = field(default=0.005, metadata={"help": "λ of the entropy aux loss."})
    r: int = field(default=8, metadata={"help": "Rank of each expert."})
    lora_alpha: float = field(default=8.0, metadata={"help": "Scale numerator: Δh carries lora_alpha/√r."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on expert, router and encoder inputs."})
    routing: str = field(default="hybrid", metadata={"help": f"One of {list(ROUTING_MODES)}."})
    top_k_routing: bool = field(default=True, metadata={"help": "Top-k then softmax of the kept gates."})
    alpha_epsilon: float = field(default=2.0, metadata={"help": "ε of the α schedule."})
    alpha_shift: float = field(default=0.0, metadata={"help": "Shift of the α schedule."})
    alpha_low_bound: float = field(default=0.2, metadata={"help": "Below: token router only."})
    alpha_up_bound: float = field(default=0.8, metadata={"help": "Above: task router only."})
    aux_gamma_balance: float = field(default=0.98, metadata={"help": "γ_b of the aux loss."})
    aux_gamma_certain: float = field(default=0.5, metadata={"help": "γ_c of the aux loss."})
    aux_reduce: str = field(default="sum", metadata={"help": f"One of {list(AUX_REDUCTIONS)}."})
    share_router_qkv: bool = field(default=False, metadata={"help": "One router for q/k/v of a layer."})
    share_router_ffn: bool = field(default=False, metadata={"help": "One router for gate/up of a layer."})
    shared_lora_a: bool = field(default=False, metadata={"help": "Experts of a layer share A."})
    lora_modules: list[str] | None = field(default=None, metadata={"help": "Modules with a plain LoRA."})
    task_token_id: int | None = field(default=None, metadata={"help": "Token initialising the task token."})
    task_encoder_layers: int = field(default=1, metadata={"help": "Layers of the task encoder."})
    task_encoder_heads: int = field(default=16, metadata={"help": "Attention heads of the task encoder."})
    task_encoder_ffn_mult: int = field(default=2, metadata={"help": "Encoder FFN width / hidden size."})
    train_task_encoder: bool = field(default=True, metadata={"help": "Train the task encoder."})
    init_lora_weights: bool = field(default=True, metadata={"help": "B starts at zero."})
    router_bias: bool = field(default=True, metadata={"help": "Always True: HMoRA's routers have a bias."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..peft_registry import peft_type

        self.peft_type = peft_type("hmora")
        if self.router_bias is not True:
            raise ValueError(
                f"HMoRA's routers always have a bias (as the authors'): router_bias must be True, got "
                f"{self.router_bias!r}"
            )
        check_choice("router_features", self.router_features, ("hidden",))
        if self.router_temperature != 1.0 or self.router_z_loss_coef != 0.0:
            raise ValueError(
                "HMoRA has no router temperature or z-loss: router_temperature must be 1.0 and "
                f"router_z_loss_coef 0.0, got {self.router_temperature!r}, {self.router_z_loss_coef!r}"
            )
        check_int("r", self.r, 1)
        check_choice("routing", self.routing, ROUTING_MODES)
        check_choice("aux_reduce", self.aux_reduce, AUX_REDUCTIONS)
        check_int("task_encoder_layers", self.task_encoder_layers, 1)
        check_int("task_encoder_heads", self.task_encoder_heads, 1)
        check_int("task_encoder_ffn_mult", self.task_encoder_ffn_mult, 1)
        if self.task_token_id is not None:
            check_int("task_token_id", self.task_token_id, 0)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.alpha_low_bound <= self.alpha_up_bound <= 1:
            raise ValueError(
                "alpha_low_bound and alpha_up_bound must satisfy 0 <= low <= up <= 1, got "
                f"{self.alpha_low_bound!r}, {self.alpha_up_bound!r}"
            )
        if not 0 <= self.aux_gamma_certain <= self.aux_gamma_balance <= 1:
            raise ValueError(
                "aux_gamma_certain and aux_gamma_balance must satisfy 0 <= γ_c <= γ_b <= 1, got "
                f"{self.aux_gamma_certain!r}, {self.aux_gamma_balance!r}"
            )
        if isinstance(self.lora_modules, str):
            self.lora_modules = [self.lora_modules]
        if self.lora_modules is not None:
            self.lora_modules = sorted(set(self.lora_modules))
