"""HMoRA tuner layer, router, task encoder and auxiliary loss (after ``LiaoMengqi/HMoRA``, ``hmora/model.py``).

For ``h [B, ..., d_in]`` of layer ``l``, the task representation ``s [B, d_embed]`` (``TaskEncoder``) and
each active adapter (``TokenRouter.forward``, ``MoRa.forward``)::

    p_tok  = softmax(W_tok dropout(h) + b_tok)            [B, ..., E]
    p_task = softmax(W_task dropout(s) + b_task)          [B, E]     broadcast over the tokens
    G      = (1 − σ(θ_l))·p_tok + σ(θ_l)·p_task           (hybrid; token-only or task-only layers: one term)
    g      = softmax over topk_k(G) of the kept values, 0 elsewhere   (``top_k_routing_strategy``)
    Δh     = (lora_alpha/√r) · Σ_e g_e · B_e A_e dropout(h)           [B, ..., d_out]   (rsLoRA)

``A ∈ R^{(E·r)×d_in}`` (Kaiming-uniform; ``r×d_in`` shared by the experts with ``shared_lora_a``),
``B ∈ R^{d_out×(E·r)}`` zero. Modules in ``lora_modules`` get one rsLoRA (``LoRA.forward``), no router.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from ..moe_common import linear_features
from .config import HMoRAConfig

ENTROPY_EPS = 1e-9  # the authors' ``log(p + 1e-9)``
POSITION_TABLE = 5000  # the authors' PositionalEncoding(max_len=5000), read from its end


def entropy_balance_loss(
    probs: torch.Tensor, weights: torch.Tensor | None, gamma_balance: float, gamma_certain: float
) -> torch.Tensor:
    """HMoRA's auxiliary loss of one router (``TokenRouter.divergence_loss``, ``TaskRouter.divergence_loss``).

    For router distributions ``p_t`` (``probs [N, E]``) with token weights ``w [N]`` (the attention mask)::

        m   = Σ_t w_t p_t / Σ_t w_t
        H_m = min(H(m), γ_b log E),   H̄_p = Σ_t w_t max(H(p_t), γ_c log E) / Σ_t w_t
        L   = ReLU((γ_b − γ_c) log E − (H_m − H̄_p)) / log E          H(q) = −Σ q log(q + 1e-9)

    0 when the mean is balanced and each token is certain; positive when routing collapses or is uncertain.
    """
    num_experts = probs.shape[-1]
    probs = probs.reshape(-1, num_experts)
    w = torch.ones_like(probs[:, 0]) if weights is None else weights.reshape(-1).to(probs)
    log_e = math.log(num_experts)
    total = w.sum().clamp_min(1.0)
    mean = (probs * w[:, None]).sum(0) / total
    h_mean = (-(mean * torch.log(mean + ENTROPY_EPS)).sum()).clamp(max=gamma_balance * log_e)
    h_tok = (-(probs * torch.log(probs + ENTROPY_EPS)).sum(-1)).clamp(min=gamma_certain * log_e)
    h_tok = (h_tok * w).sum() / total
    return F.relu((gamma_balance - gamma_certain) * log_e - (h_mean - h_tok)) / log_e


def alpha_logit_init(layer_index: int, last_index: int, epsilon: float, shift: float) -> float:
    """``θ_l = ε·(2l/L − 1) + shift`` (``-ε + 2ε·l/L + shift`` in ``TokenRouter.__init__``); ``L = 0`` → ``l/L = 0``."""
    ratio = layer_index / last_index if last_index > 0 else 0.0
    return -epsilon + 2 * epsilon * ratio + shift


def router_mode(config: HMoRAConfig, layer_index: int, last_index: int) -> str:
    """``"token"``, ``"task"`` or ``"hybrid"`` for this layer: the config's mode, where ``"hybrid"`` falls back
    to one router when ``σ(θ_l)`` starts outside ``[alpha_low_bound, alpha_up_bound]``."""
    if config.routing != "hybrid":
        return config.routing
    alpha = 1 / (
        1 + math.exp(-alpha_logit_init(layer_index, last_index, config.alpha_epsilon, config.alpha_shift))
    )
    if alpha < config.alpha_low_bound:
        return "token"
    if alpha > config.alpha_up_bound:
        return "task"
    return "hybrid"


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[length, dim]``: the last ``length`` rows of the authors' 5000-row sin/cos table (positions
    ``5000 − length … 4999``, ``PositionalEncoding.forward``), computed on the fly."""
    pos = torch.arange(POSITION_TABLE - length, POSITION_TABLE, device=device, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


class TaskEncoder(nn.Module):
    """``s = Enc([e_1 + pe_1, …, e_T + pe_T, τ])_{T+1}``: a post-norm transformer encoder over the frozen input
    embeddings of the prompt (non-prompt positions masked as keys) and an appended learnable task token
    ``τ`` (``TaskEncoder`` in ``hmora/model.py``); ``s`` is the task token's output ``[B, d]``."""

    def __init__(self, dim: int, config: HMoRAConfig) -> None:
        super().__init__()
        if dim % config.task_encoder_heads:
            raise ValueError(
                f"task_encoder_heads={config.task_encoder_heads} must divide the embedding size {dim}"
            )
        self.task_token = nn.Parameter(torch.zeros(dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                config.task_encoder_heads,
                dim_feedforward=config.task_encoder_ffn_mult * dim,
                dropout=config.dropout,
                batch_first=True,
            )
            for _ in range(config.task_encoder_layers)
        )

    def forward(self, embeds: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """``embeds [B, T, d]``, ``prompt_mask [B, T]`` (1 = prompt token) → ``s [B, d]``."""
        work = self.task_token.dtype
        b, t, d = embeds.shape
        src = embeds.to(work) + sinusoidal_positions(t, d, embeds.device, work)
        src = torch.cat([src, self.task_token.expand(b, 1, d)], dim=1)  # [B, T+1, d]
        keep = torch.cat([prompt_mask.bool(), prompt_mask.new_ones(b, 1).bool()], dim=1)
        for layer in self.layers:
            src = layer(src, src_key_padding_mask=~keep)
        return src[:, -1]


class HMoRARouter(nn.Module):
    """One HMoRA router (``TokenRouter``): token and/or task linear maps, the mixing logit ``θ_l``.

    ``mode``: ``"token"`` (``p_tok`` only), ``"task"`` (``p_task`` only) or ``"hybrid"``. One instance may be
    shared by several layers (``share_router_qkv``/``share_router_ffn``); its loss then counts once.
    """

    def __init__(
        self, in_features: int, task_features: int, config: HMoRAConfig, mode: str, alpha_logit: float
    ) -> None:
        super().__init__()
        self.mode = mode
        self.num_experts, self.top_k, self.top_k_routing = (
            config.num_experts,
            config.top_k,
            config.top_k_routing,
        )
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.token = nn.Linear(in_features, config.num_experts) if mode != "task" else None
        self.task = nn.Linear(task_features, config.num_experts) if mode != "token" else None
        self.alpha_logit = nn.Parameter(torch.tensor(float(alpha_logit))) if mode == "hybrid" else None

    def mixing_weight(self) -> torch.Tensor | None:
        """``α_l = σ(θ_l)`` (hybrid routers), else None."""
        return None if self.alpha_logit is None else torch.sigmoid(self.alpha_logit)

    def forward(
        self, h: torch.Tensor, task_repr: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(g [..., E], p_tok [..., E] or None, p_task [B, E] or None)`` in float32 (float64 for float64)."""
        ref = self.token if self.token is not None else self.task
        work = torch.float64 if ref.weight.dtype == torch.float64 else torch.float32
        p_tok = p_task = None
        if self.token is not None:
            p_tok = F.softmax(self.token(self.dropout(h.to(ref.weight.dtype))).to(work), dim=-1)
        if self.task is not None:
            if task_repr is None:
                raise ValueError(
                    "HMoRA's task router needs the task representation: call the model through the PeftModel "
                    "(its forward hook computes it from the prompt) or set it with set_task_representation()"
                )
            if task_repr.shape[0] != h.shape[0]:
                raise ValueError(
                    f"task representation has batch size {task_repr.shape[0]} but the layer input {tuple(h.shape)}"
                )
            p_task = F.softmax(self.task(self.dropout(task_repr.to(ref.weight.dtype))).to(work), dim=-1)
        if p_task is not None:
            shape = (p_task.shape[0],) + (1,) * (h.dim() - 2) + (self.num_experts,)
            task_part = p_task.reshape(shape)
        if self.mode == "token":
            mix = p_tok
        elif self.mode == "task":
            mix = task_part.expand(*h.shape[:-1], self.num_experts)
        else:
            alpha = torch.sigmoid(self.alpha_logit).to(work)
            mix = (1 - alpha) * p_tok + alpha * task_part
        if not self.top_k_routing:
            return mix, p_tok, p_task
        kept, index = mix.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(mix).scatter(-1, index, F.softmax(kept, dim=-1))
        return gates, p_tok, p_task


class HMoRALayer(BaseTunerLayer):
    """State of HMoRA on one layer; keyed by adapter name.

    ``hmora_A[a]`` ``[E·r, d_in]`` (``[r, d_in]`` shared or plain LoRA), ``hmora_B[a]`` ``[d_out, E·r]``
    (``[d_out, r]`` plain LoRA), ``hmora_router[a]`` (absent for plain LoRA). After a forward:
    ``router_stats[a]`` (``dispatch_fraction`` and ``mean_prob`` per expert, detached) and the router's
    auxiliary-loss terms (``aux_terms``).
    """

    adapter_layer_names = ("hmora_A", "hmora_B", "hmora_router")
    # the optimizer role of each adapter attribute's parameters (spectral_moe.training.optim; PARAMETER_ROLES)
    parameter_roles = {"hmora_router": "router"}
    other_param_names = ("hmora_config", "hmora_dropout", "hmora_layer_index")
    router_attr = "hmora_router"
    config_attr = "hmora_config"

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.hmora_A = nn.ParameterDict({})
        self.hmora_B = nn.ParameterDict({})
        self.hmora_router = nn.ModuleDict({})
        self.hmora_dropout = nn.ModuleDict({})
        self.hmora_config: dict[str, HMoRAConfig] = {}
        self.hmora_layer_index: dict[str, tuple[int, int]] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self.kwargs = kwargs
        self.in_features, self.out_features = linear_features(self.get_base_layer())
        self.router_stats: dict[str, dict[str, torch.Tensor]] = {}
        self.aux_terms: dict[str, tuple[HMoRARouter, torch.Tensor | None, torch.Tensor | None]] = {}

    def update_layer(
        self,
        adapter_name: str,
        config: HMoRAConfig,
        layer_index: int = 0,
        last_index: int = 0,
        plain_lora: bool = False,
        router: HMoRARouter | None = None,
        task_features: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create adapter ``adapter_name``: Kaiming A, zero B and (unless ``plain_lora``) a router — ``router``
        when given (shared), else a new one whose mode and ``θ_l`` follow from ``layer_index / last_index``."""
        self.hmora_config[adapter_name] = config
        self.hmora_layer_index[adapter_name] = (layer_index, last_index)
        experts = 1 if plain_lora else config.num_experts
        rows_a = config.r if (plain_lora or config.shared_lora_a) else experts * config.r
        lora_a = torch.empty(rows_a, self.in_features)
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5))
        self.hmora_A[adapter_name] = nn.Parameter(lora_a)
        lora_b = torch.zeros(self.out_features, experts * config.r)
        if not config.init_lora_weights:
            nn.init.normal_(lora_b, std=1.0 / config.r)
        self.hmora_B[adapter_name] = nn.Parameter(lora_b)
        self.hmora_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        if adapter_name in self.hmora_router:
            del self.hmora_router[adapter_name]
        if not plain_lora:
            if router is None:
                mode = router_mode(config, layer_index, last_index)
                logit = alpha_logit_init(layer_index, last_index, config.alpha_epsilon, config.alpha_shift)
                router = HMoRARouter(self.in_features, task_features or self.in_features, config, mode, logit)
            self.hmora_router[adapter_name] = router
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def has_adapter(self, adapter_name: str) -> bool:
        return adapter_name in self.hmora_A

    def set_task_representation(self, task_repr: dict[str, torch.Tensor] | None) -> None:
        """``{adapter: s [B, d]}`` for the next forwards (the tuner's forward pre-hook sets it)."""
        self.__dict__["_task_repr"] = task_repr

    def mixing_weight(self, adapter_name: str) -> torch.Tensor | None:
        """``α_l = σ(θ_l)`` of this layer's router for ``adapter_name`` (None: plain LoRA or one router)."""
        router = self.hmora_router[adapter_name] if adapter_name in self.hmora_router else None
        return None if router is None else router.mixing_weight()

    def gates(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """The gates ``g [..., E]`` exactly as the forward uses them (without recording anything)."""
        return self._route(adapter_name, x)[0]

    def _route(self, adapter_name: str, x: torch.Tensor):
        task = (self.__dict__.get("_task_repr") or {}).get(adapter_name)
        return self.hmora_router[adapter_name](x, task)

    def adapter_delta(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """``(α/√r) · Σ_e g_e B_e A_e dropout(x)`` (rsLoRA for plain-LoRA modules); records stats and loss terms."""
        config = self.hmora_config[adapter_name]
        lora_a, lora_b = self.hmora_A[adapter_name], self.hmora_B[adapter_name]
        scale = config.lora_alpha / math.sqrt(config.r)
        z = self.hmora_dropout[adapter_name](x.to(lora_a.dtype)) @ lora_a.T  # [..., E·r] or [..., r]
        if adapter_name not in self.hmora_router:
            return z @ lora_b.T * scale
        gates, p_tok, p_task = self._route(adapter_name, x)
        self._record(adapter_name, x, gates, p_tok, p_task)
        e, r = config.num_experts, config.r
        if config.shared_lora_a:
            z = z.unsqueeze(-2).expand(*z.shape[:-1], e, r)
        else:
            z = z.reshape(*z.shape[:-1], e, r)
        z = (z * gates.to(z.dtype).unsqueeze(-1)).reshape(*z.shape[:-2], e * r)
        return z @ lora_b.T * scale

    def _record(self, adapter_name, x, gates, p_tok, p_task) -> None:
        config = self.hmora_config[adapter_name]
        mask = self.__dict__.get("_token_mask")
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
            mask = None  # e.g. one new token against a cached context while generating
        token_loss = task_loss = None
        gb, gc = config.aux_gamma_balance, config.aux_gamma_certain
        if p_tok is not None:
            token_loss = entropy_balance_loss(p_tok, mask, gb, gc)
        if p_task is not None:
            task_loss = entropy_balance_loss(p_task, None, gb, gc)
        if not self.training:
            token_loss = None if token_loss is None else token_loss.detach()
            task_loss = None if task_loss is None else task_loss.detach()
        self.aux_terms[adapter_name] = (self.hmora_router[adapter_name], token_loss, task_loss)
        e = gates.shape[-1]
        w = torch.ones(gates.shape[:-1], device=gates.device) if mask is None else mask.to(gates.device)
        w = w.reshape(-1, 1).to(gates.dtype)
        chosen = (gates.detach().reshape(-1, e) > 0).to(gates.dtype) * w
        self.router_stats[adapter_name] = {
            "dispatch_fraction": chosen.sum(0) / chosen.sum().clamp_min(1.0),
            "mean_prob": (gates.detach().reshape(-1, e) * w).sum(0) / w.sum().clamp_min(1.0),
        }

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """Dense ``ΔW`` of a plain-LoRA module; routed experts depend on each token and cannot be merged."""
        if adapter_name in self.hmora_router:
            raise ValueError(self._merge_error(adapter_name))
        config = self.hmora_config[adapter_name]
        return (
            self.hmora_B[adapter_name]
            @ self.hmora_A[adapter_name]
            * (config.lora_alpha / math.sqrt(config.r))
        )

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError(self._merge_error(next(iter(self.hmora_config), "default")))

    def unmerge(self) -> None:
        pass

    @staticmethod
    def _merge_error(adapter_name: str) -> str:
        return (
            f"HMoRA adapter {adapter_name!r} routes every token to its own experts, so its update cannot be "
            "merged into the base weight; keep the adapter unmerged, or call unload() to drop it."
        )


class HMoRALinear(nn.Module, HMoRALayer):
    """HMoRA around an ``nn.Linear`` or transformers ``Conv1D`` (``fan_in_fan_out=True``)."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: HMoRAConfig, **kwargs: Any) -> None:
        super().__init__()
        HMoRALayer.__init__(self, base_layer)
        self.fan_in_fan_out = config.fan_in_fan_out
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters or self.merged:
            return result
        for name in self.active_adapters:
            if self.has_adapter(name):
                result = result + self.adapter_delta(name, x).to(result.dtype)
        return result

    def __repr__(self) -> str:
        return "hmora." + super().__repr__()
