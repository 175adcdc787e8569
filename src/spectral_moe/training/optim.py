"""Optimizer factory: separate groups for FRAME orders, FourierMoE spectra and routers.

Each parameter's group is the role its tuner layer declares (``parameter_roles`` on the layer class,
:mod:`spectral_moe.tuners.introspection`): ``"orders"``, ``"spectrum"``, ``"router"``; the rest is
``"decay"`` (≥2-D) or ``"no_decay"``.

FRAME's orders get their own optimizer (own class and learning rate, no weight decay). Their
default learning rate is per layer: the order move at which one expert's ΔW changes by 2 % per
step (``spectral.frame.default_order_lr``: 6e-3 for ``weighted``, ``0.027/d`` for ``hermite``,
``0.025/d`` for ``chirp``; results/frame_orders.md). FourierMoE's coefficients, like FourierFT's, want
a learning rate far above LoRA's, so they get their own group. Everything is combined behind one
``torch.optim.Optimizer`` whose ``param_groups`` are the inner optimizers' own group dicts: a
learning-rate scheduler built on it (e.g. the one ``transformers.Trainer`` creates) scales every
group, orders included, and ``state_dict``/``load_state_dict`` round-trip all inner states.

Gradient clipping: the orders stay out of the global gradient-norm clip (their gradient norm, e.g.
0.85 for hermite orders against a clip of 1.0, would otherwise shrink every other step; Adam bounds
an order's move by about its learning rate anyway). ``SpectralTrainer`` clips everything but the
orders. With a plain ``transformers.Trainer`` (which clips ``model.parameters()``, orders included)
set ``TrainingArguments(max_grad_norm=0)`` and pass ``create_optimizer(..., max_grad_norm=1.0)``:
the optimizer then clips the non-order gradients itself at each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..tuners.introspection import PARAMETER_ROLES, parameter_roles, role_parameters

ORDER_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

# Parameter roles come from the tuners: each layer class declares ``parameter_roles`` (adapter attribute →
# "orders" / "spectrum" / "router"; spectral_moe.tuners.introspection). Nothing is matched by name.


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers stepping as one; ``param_groups`` is the concatenation of theirs (shared dicts).

    With ``max_grad_norm``, ``step`` first clips the gradients of the parameters in ``clip_params``
    to that total norm (``torch.nn.utils.clip_grad_norm_``); the others are not clipped.
    """

    def __init__(
        self,
        optimizers: Iterable[torch.optim.Optimizer],
        max_grad_norm: float | None = None,
        clip_params: Iterable[nn.Parameter] = (),
    ) -> None:
        self.optimizers = list(optimizers)
        self.max_grad_norm = max_grad_norm
        self.clip_params = list(clip_params)
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
        if self.max_grad_norm is not None and self.clip_params:
            torch.nn.utils.clip_grad_norm_(self.clip_params, self.max_grad_norm)
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


def order_parameters(model: nn.Module) -> list[nn.Parameter]:
    """FRAME's learned orders in ``model`` (trainable or not): the parameters declared ``"orders"``."""
    return [p for _, _, p in role_parameters(model, "orders")]


def default_order_lrs(model: nn.Module) -> dict[int, float]:
    """``id(order parameter) → default learning rate`` from its layer's ``default_order_lr(adapter)``."""
    return {
        id(p): layer.default_order_lr(adapter)
        for layer, adapter, p in role_parameters(model, "orders")
        if callable(getattr(layer, "default_order_lr", None))
    }


def parameter_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Trainable parameters by role: ``orders``, ``spectrum``, ``router`` (as the tuner layers declare them,
    :func:`~spectral_moe.tuners.introspection.parameter_roles`), else ``decay`` (≥2-D) or ``no_decay``."""
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {
        k: [] for k in (*PARAMETER_ROLES, "decay", "no_decay")
    }
    roles = parameter_roles(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        role = roles.get(id(p)) or ("decay" if p.ndim >= 2 else "no_decay")
        groups[role].append((name, p))
    return {k: groups[k] for k in ("orders", "spectrum", "router", "decay", "no_decay")}


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
    max_grad_norm: float | None = None,
) -> torch.optim.Optimizer:
    """AdamW over the adapter parameters plus a separate optimizer for FRAME orders.

    Groups (named ``group["name"]``): ``"spectrum"`` (FourierMoE coefficients, ``spectrum_lr`` or
    ``lr``, no weight decay), ``"router"`` (``router_lr`` or ``lr``, no decay), ``"decay"``
    (other ≥2-D parameters, e.g. LoRA factors, ``weight_decay``), ``"no_decay"`` (biases, norms),
    and ``"orders"`` in their own ``order_optimizer`` (``"adam"``, ``"adamw"`` or ``"sgd"``) with weight
    decay 0, at ``order_lr`` when given, else at each layer's measured default
    (``FrameLayer.default_order_lr``: 6e-3 for ``weighted``, ``0.027/d`` for ``hermite``, ``0.025/d`` for
    ``chirp``, d = the layer's larger width), one ``"orders"`` group per distinct rate.

    ``max_grad_norm``: if given, ``step()`` clips the non-order gradients to this total norm (orders
    are never clipped); use it with ``TrainingArguments(max_grad_norm=0)`` under a plain ``Trainer``,
    whose own clip would include the orders (``SpectralTrainer`` excludes them itself).

    Returns one optimizer usable as ``Trainer(optimizers=(opt, None))``.
    """
    if order_optimizer not in ORDER_OPTIMIZERS:
        raise ValueError(f"order_optimizer must be one of {list(ORDER_OPTIMIZERS)}, got {order_optimizer!r}")
    for field, value in (
        ("lr", lr),
        ("order_lr", order_lr),
        ("spectrum_lr", spectrum_lr),
        ("router_lr", router_lr),
        ("max_grad_norm", max_grad_norm),
    ):
        if value is not None and not value >= 0:
            raise ValueError(f"{field} must be >= 0, got {value}")
    groups = parameter_groups(model)
    order_groups: dict[float, list[nn.Parameter]] = {}
    defaults = default_order_lrs(model) if order_lr is None else {}
    for name, p in groups["orders"]:
        if order_lr is None and id(p) not in defaults:
            raise ValueError(
                f"no default order learning rate for {name} (not in a FRAME layer): pass order_lr"
            )
        order_groups.setdefault(order_lr if order_lr is not None else defaults[id(p)], []).append(p)
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
    if order_groups:
        order_cls = ORDER_OPTIMIZERS[order_optimizer]
        order_param_groups = [
            {"params": params, "lr": glr, "weight_decay": 0.0, "name": "orders"}
            for glr, params in sorted(order_groups.items(), reverse=True)
        ]
        optimizers.append(order_cls(order_param_groups, lr=order_param_groups[0]["lr"]))
    if len(optimizers) == 1 and max_grad_norm is None:
        return optimizers[0]
    clipped = [p for g in main_groups for p in g["params"]]
    return CombinedOptimizer(optimizers, max_grad_norm=max_grad_norm, clip_params=clipped)
