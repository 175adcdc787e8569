"""Optimizer factory: separate groups for FRAME orders, FourierMoE spectra and routers.

FRAME's orders move the loss on a scale of ``Δa ≈ 1/d``, so they get their own optimizer (own
class and learning rate, no weight decay). FourierMoE's coefficients, like FourierFT's, want a
learning rate far above LoRA's, so they get their own group. Everything is combined behind one
``torch.optim.Optimizer`` whose ``param_groups`` are the inner optimizers' own group dicts: a
learning-rate scheduler built on it (e.g. the one ``transformers.Trainer`` creates) scales every
group, orders included, and ``state_dict``/``load_state_dict`` round-trip all inner states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

ORDER_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

ORDER_KEY = "frame_order_logit"
SPECTRUM_KEY = "fouriermoe_spectrum"
ROUTER_KEYS = ("fouriermoe_router", "frame_router")


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers stepping as one; ``param_groups`` is the concatenation of theirs (shared dicts)."""

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        params = [p for opt in self.optimizers for g in opt.param_groups for p in g["params"]]
        super().__init__(params, defaults={})
        # share the inner group dicts, so schedulers and users changing group["lr"] reach the inner optimizers
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self):  # noqa: D401 - merged view, read-only use (e.g. logging)
        merged = {}
        for opt in self.optimizers:
            merged.update(opt.state)
        return merged

    @state.setter
    def state(self, value) -> None:  # torch.optim.Optimizer.__init__ assigns an empty state
        pass

    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        states = state_dict["optimizers"]
        if len(states) != len(self.optimizers):
            raise ValueError(
                f"state_dict holds {len(states)} optimizers, this one has {len(self.optimizers)}"
            )
        for opt, st in zip(self.optimizers, states):
            opt.load_state_dict(st)
        self.param_groups = [g for opt in self.optimizers for g in opt.param_groups]


def parameter_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Trainable parameters by role: ``orders``, ``spectrum``, ``router``, ``decay`` (≥2-D), ``no_decay``."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {
        k: [] for k in ("orders", "spectrum", "router", "decay", "no_decay")
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ORDER_KEY in name:
            groups["orders"].append((name, p))
        elif SPECTRUM_KEY in name:
            groups["spectrum"].append((name, p))
        elif any(k in name for k in ROUTER_KEYS):
            groups["router"].append((name, p))
        elif p.ndim >= 2:
            groups["decay"].append((name, p))
        else:
            groups["no_decay"].append((name, p))
    return groups


def create_optimizer(
    model: nn.Module,
    lr: float,
    *,
    order_lr: float | None = None,
    order_optimizer: str = "adam",
    weight_decay: float = 0.0,
    spectrum_lr: float | None = None,
    router_lr: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """AdamW over the adapter parameters plus a separate optimizer for FRAME orders.

    Groups (named ``group["name"]``): ``"spectrum"`` (FourierMoE coefficients, ``spectrum_lr`` or
    ``lr``, no weight decay), ``"router"`` (``router_lr`` or ``lr``, no decay), ``"decay"``
    (other ≥2-D parameters, e.g. LoRA factors, ``weight_decay``), ``"no_decay"`` (biases, norms),
    and ``"orders"`` in their own ``order_optimizer`` (``"adam"``, ``"adamw"`` or ``"sgd"``) at
    ``order_lr`` with weight decay 0. Returns one optimizer usable as
    ``Trainer(optimizers=(opt, None))``.
    """
    if order_optimizer not in ORDER_OPTIMIZERS:
        raise ValueError(f"order_optimizer must be one of {list(ORDER_OPTIMIZERS)}, got {order_optimizer!r}")
    for field, value in (
        ("lr", lr),
        ("order_lr", order_lr),
        ("spectrum_lr", spectrum_lr),
        ("router_lr", router_lr),
    ):
        if value is not None and not value >= 0:
            raise ValueError(f"{field} must be >= 0, got {value}")
    groups = parameter_groups(model)
    if groups["orders"] and order_lr is None:
        raise ValueError("the model has learnable FRAME orders: pass order_lr (their own learning rate)")
    spec = [
        ("spectrum", spectrum_lr if spectrum_lr is not None else lr, 0.0),
        ("router", router_lr if router_lr is not None else lr, 0.0),
        ("decay", lr, weight_decay),
        ("no_decay", lr, 0.0),
    ]
    main_groups = [
        {"params": [p for _, p in groups[name]], "lr": glr, "weight_decay": wd, "name": name}
        for name, glr, wd in spec
        if groups[name]
    ]
    if not main_groups and not groups["orders"]:
        raise ValueError("the model has no trainable parameters")
    optimizers = []
    if main_groups:
        optimizers.append(torch.optim.AdamW(main_groups, lr=lr, betas=betas))
    if groups["orders"]:
        order_cls = ORDER_OPTIMIZERS[order_optimizer]
        order_group = {
            "params": [p for _, p in groups["orders"]],
            "lr": order_lr,
            "weight_decay": 0.0,
            "name": "orders",
        }
        optimizers.append(order_cls([order_group], lr=order_lr))
    return optimizers[0] if len(optimizers) == 1 else CombinedOptimizer(optimizers)
