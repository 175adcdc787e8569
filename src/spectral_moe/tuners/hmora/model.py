"""HMoRA tuner: injects ``HMoRALinear``, owns the task encoder, computes ``s`` and adds the auxiliary loss.

The task representation must come from the prompt only. A forward pre-hook on the wrapped model reads
``input_ids`` (or ``inputs_embeds``), ``attention_mask`` and ``labels`` and builds the prompt mask::

    prompt = attention_mask ∧ (labels == −100)          (labels given: the collator's −100 marks the prompt)
    prompt = attention_mask                              (no labels, e.g. a custom loop or scoring)
    a row without any −100 label (training on the whole input) uses its whole non-padded input;
    ``with model.base_model.prompt_mask(mask):`` sets the mask explicitly for the forwards inside.

It runs the task encoder once per forward and hands ``s`` to every layer. In generation the first step
sees the whole prompt; later steps (``past_key_values`` non-empty, same batch size) reuse that ``s``.
A forward hook adds ``router_aux_loss_coef · (Σ or mean over routers of their losses)`` to
``outputs.loss`` in training (a shared router counts once; a hybrid router has a token and a task term).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn

from ..moe_common import RoutedTunerMixin, check_supported_target
from .config import HMoRAConfig
from .layer import HMoRALayer, HMoRALinear, TaskEncoder

QKV = ("q_proj", "k_proj", "v_proj")
FFN_IN = ("gate_proj", "up_proj")


def layer_position(model: nn.Module, key: str) -> tuple[int, int]:
    """``(l, L)``: the index of the block holding module ``key`` in its ``nn.ModuleList`` and that list's last
    index (``max_llm_layer`` in the authors' ``_apply_hmora``); ``(0, 0)`` outside any list."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if re.fullmatch(r"\d+", part) and i > 0:
            parent = model.get_submodule(".".join(parts[:i]))
            if isinstance(parent, nn.ModuleList):
                return int(part), len(parent) - 1
    return 0, 0


class HMoRAModel(RoutedTunerMixin):
    """HMoRA model: ``get_peft_model(model, HMoRAConfig(task_token_id=..., ...))`` builds one of these.

    ``hmora_task_encoder[adapter]`` (a ``TaskEncoder``) lives on the tuner, so it is saved, loaded and
    counted as trainable with the layers' experts and routers.
    """

    prefix: str = "hmora_"
    tuner_layer_cls = HMoRALayer
    linear_cls = HMoRALinear
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _pre_injection_hook(self, model: nn.Module, config: PeftConfig, adapter_name: str) -> None:
        super()._pre_injection_hook(model, config, adapter_name)
        if "hmora_task_encoder" not in self._modules:
            self.hmora_task_encoder = nn.ModuleDict({})
        self.__dict__.setdefault("_shared_routers", {})

    def _create_and_replace(
        self,
        config: HMoRAConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if current_key is None:
            raise ValueError("Current Key shouldn't be `None`")
        index, last = layer_position(self.model, current_key)
        plain = any(current_key == m or current_key.endswith("." + m) for m in (config.lora_modules or ()))
        group = None
        if config.share_router_qkv and target_name in QKV:
            group = (adapter_name, current_key.rpartition(".")[0], "qkv")
        elif config.share_router_ffn and target_name in FFN_IN:
            group = (adapter_name, current_key.rpartition(".")[0], "ffn")
        shared = self._shared_routers.get(group) if group is not None else None
        embeddings = (
            self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        )
        kwargs = dict(
            layer_index=index,
            last_index=last,
            plain_lora=plain,
            router=shared,
            task_features=getattr(embeddings, "embedding_dim", None),
        )
        if isinstance(target, HMoRALayer):
            target.update_layer(adapter_name, config, **kwargs)
            new_module = target
        else:
            check_supported_target(config, target, target_name)
            new_module = HMoRALinear(target, adapter_name, config=config, **kwargs)
            if adapter_name not in self.active_adapters:
                new_module.requires_grad_(False)
            self._replace_module(parent, target_name, new_module, target)
        if group is not None and shared is None and adapter_name in new_module.hmora_router:
            self._shared_routers[group] = new_module.hmora_router[adapter_name]

    def hmora_layers(self) -> list[HMoRALayer]:
        return [m for m in self.model.modules() if isinstance(m, HMoRALayer)]

    def _post_injection_hook(self, model: nn.Module, config: HMoRAConfig, adapter_name: str) -> None:
        BaseTuner._post_injection_hook(self, model, config, adapter_name)
        self.__dict__.pop("_shared_routers", None)
        needs_task = any(
            adapter_name in layer.hmora_router and layer.hmora_router[adapter_name].task is not None
            for layer in self.hmora_layers()
        )
        if needs_task and adapter_name not in self.hmora_task_encoder:
            embeddings = model.get_input_embeddings()
            if config.task_token_id is None:
                raise ValueError(
                    "HMoRAConfig.task_token_id is required when a task router exists (routing='hybrid' or "
                    "'task'): the id of the token whose embedding initialises the task token, e.g. "
                    "tokenizer.convert_tokens_to_ids('?') as the authors do"
                )
            if not 0 <= config.task_token_id < embeddings.num_embeddings:
                raise ValueError(
                    f"task_token_id must be in [0, {embeddings.num_embeddings}), got {config.task_token_id}"
                )
            encoder = TaskEncoder(embeddings.embedding_dim, config)
            weight = embeddings.weight
            if weight.device.type != "meta":
                encoder.task_token.data.copy_(weight.detach()[config.task_token_id].float())
            encoder.to(weight.device)
            if not config.train_task_encoder:
                encoder.layers.requires_grad_(False)
            if config.inference_mode or adapter_name not in self.active_adapters:
                encoder.requires_grad_(False)
            self.hmora_task_encoder[adapter_name] = encoder
        if "_hmora_hooks" not in self.__dict__:
            self._hmora_hooks = [
                model.register_forward_pre_hook(self._begin_forward, with_kwargs=True),
                model.register_forward_hook(self._add_aux_loss),
            ]

    @contextlib.contextmanager
    def prompt_mask(self, mask: torch.Tensor) -> Iterator[None]:
        """Inside, forwards take ``mask [B, T]`` (1 = prompt token) as the task encoder's prompt."""
        self.__dict__["_explicit_prompt_mask"] = mask
        try:
            yield
        finally:
            self.__dict__.pop("_explicit_prompt_mask", None)

    def task_representation(
        self,
        adapter_name: str,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s [B, d]`` of adapter ``adapter_name`` for a batch (prompt mask as in the module docstring)."""
        if inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings()(input_ids)
        inputs_embeds = inputs_embeds.detach()  # the authors' frozen embeddings
        base = (
            torch.ones(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
            if attention_mask is None
            else attention_mask.bool()
        )
        if prompt_mask is not None:
            prompt = prompt_mask.bool() & base
        elif labels is not None and tuple(labels.shape) == tuple(base.shape):
            prompt = base & (labels == -100)
            prompt = torch.where(prompt.any(-1, keepdim=True), prompt, base)  # no −100: the whole input
        else:
            prompt = base
        return self.hmora_task_encoder[adapter_name](inputs_embeds, prompt)

    def _begin_forward(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        embeds = kwargs.get("inputs_embeds")
        layers = self.hmora_layers()
        reprs: dict[str, torch.Tensor] = {}
        active = [n for n in self.active_adapters if n in self.hmora_task_encoder]
        if active and (input_ids is not None or embeds is not None):
            batch = (input_ids if input_ids is not None else embeds).shape[0]
            past = kwargs.get("past_key_values", kwargs.get("cache"))  # transformers 4 / 5 names
            past_len = (
                past.get_seq_length() if hasattr(past, "get_seq_length") else (len(past) if past else 0)
            )
            cached = self.__dict__.get("_generation_task_repr")
            if (
                past_len
                and cached is not None
                and all(n in cached and batch % cached[n].shape[0] == 0 for n in active)
            ):
                # a continuation of cached prompts; a cache grown by batch_repeat_interleave (scoring several
                # continuations of one context, beam search) repeats each prompt's s the same way
                reprs = {n: cached[n].repeat_interleave(batch // cached[n].shape[0], dim=0) for n in active}
            else:
                labels = kwargs.get("labels")
                explicit = self.__dict__.get("_explicit_prompt_mask")
                width = (input_ids if input_ids is not None else embeds).shape[1]
                own_mask = mask if mask is None or mask.shape[1] == width else mask[:, -width:]
                for name in active:
                    reprs[name] = self.task_representation(
                        name,
                        input_ids,
                        own_mask,
                        labels if isinstance(labels, torch.Tensor) else None,
                        embeds,
                        explicit,
                    )
                if not module.training:
                    self.__dict__["_generation_task_repr"] = {n: s.detach() for n, s in reprs.items()}
        for layer in layers:
            layer.aux_terms.clear()
            layer.set_task_representation(reprs or None)
            layer.__dict__["_token_mask"] = mask

    def get_router_aux_loss(self, weighted: bool = False, sync: bool | None = None) -> torch.Tensor | None:
        """The last forward's ``Σ`` (or mean, ``aux_reduce``) over routers of their token and task losses;
        ``weighted=True`` multiplies by ``router_aux_loss_coef`` (what training adds to the loss). A shared
        router counts once. ``sync`` is accepted for API parity; the losses are per process (as the authors')."""
        terms, seen = [], set()
        for layer in self.hmora_layers():
            for name in self.active_adapters:
                if name not in layer.aux_terms:
                    continue
                router, token_loss, task_loss = layer.aux_terms[name]
                if id(router) in seen:
                    continue
                seen.add(id(router))
                terms += [t for t in (token_loss, task_loss) if t is not None]
        if not terms:
            return None
        config = self.peft_config[self.active_adapters[0]]
        stacked = torch.stack([t.to(terms[0].device) for t in terms])
        loss = stacked.sum() if config.aux_reduce == "sum" else stacked.mean()
        return config.router_aux_loss_coef * loss if weighted else loss

    def _add_aux_loss(self, module: nn.Module, args: Any, outputs: Any) -> Any:
        loss = getattr(outputs, "loss", None)
        if module.training and loss is not None:
            extra = self.get_router_aux_loss(weighted=True)
            if extra is not None:
                outputs.loss = loss + extra.to(loss.dtype)
        return outputs

    def mixing_weights(self, adapter_name: str = "default") -> dict[str, float]:
        """``{module name: α_l}`` of every hybrid router (for analysis)."""
        out = {}
        for name, module in self.model.named_modules():
            if isinstance(module, HMoRALayer) and adapter_name in module.hmora_router:
                alpha = module.mixing_weight(adapter_name)
                if alpha is not None:
                    out[name] = float(alpha.detach())
        return out

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        if adapter_name in self.hmora_task_encoder:
            del self.hmora_task_encoder[adapter_name]

    def _check_merge_allowed(self) -> None:
        BaseTuner._check_merge_allowed(self)
        raise ValueError(
            "HMoRA routes every token to its own experts, so merge_and_unload() cannot fold it into the base "
            "weights; keep the PeftModel unmerged, or call unload() to get the base model back."
        )

    def _unload_and_optionally_merge(self, merge: bool = True, *args: Any, **kwargs: Any):
        if merge:
            self._check_merge_allowed()
        for handle in self.__dict__.pop("_hmora_hooks", []):
            handle.remove()
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)
