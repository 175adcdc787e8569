"""No host syncs on the routed forward path: a training forward + backward of every routed method calls no
``Tensor.item`` / ``__bool__`` / ``tolist`` / ``nonzero`` / ``bincount`` / boolean-mask indexing from our
package (on a GPU each is a device-to-host copy that stalls the stream; CUDA's sync debug mode needs a GPU,
so on CPU the calls are spied on and the stack is checked for ``spectral_moe`` frames)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from peft import get_peft_model

import spectral_moe
from spectral_moe.training.methods import build_peft_config
from tests.helpers import tiny_llama

PACKAGE_DIR = str(Path(spectral_moe.__file__).resolve().parent)
TORCH_DIR = str(Path(torch.__file__).resolve().parent)

ROUTED = {
    "fouriermoe": {"n_frequency": 8, "num_experts": 4},
    "frame": {"num_experts": 4, "r": 2},
    "moelora": {"num_experts": 4, "r": 2},
    "flylora": {"r": 8, "top_k": 2},
    "hmora": {"num_experts": 4, "r": 2, "task_token_id": 5},
}


def _caller_in_package() -> str | None:
    """``file:line`` of the nearest frame outside torch when it is one of our package's, else None."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back
    if frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        return f"{frame.f_code.co_filename.removeprefix(PACKAGE_DIR)}:{frame.f_lineno}"
    return None


class Syncs(list):
    """``(what, where)`` of the syncing calls made from our package while :attr:`on`."""

    on = False

    def watch(self):
        outer = self

        class Watch:
            def __enter__(self):
                outer.on = True

            def __exit__(self, *exc):
                outer.on = False

        return Watch()


@pytest.fixture
def host_syncs(monkeypatch):
    """Spies on the syncing calls; ``with host_syncs.watch():`` records those made from our package."""
    found = Syncs()

    def spy(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            where = _caller_in_package() if found.on else None
            if where is not None:
                found.append((name, where))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("item", "__bool__", "tolist", "nonzero", "__int__", "__float__"):
        spy(torch.Tensor, name)
    for name in ("nonzero", "bincount", "unique", "masked_select"):
        spy(torch, name)
    getitem = torch.Tensor.__getitem__

    def indexing(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if found.on and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            where = _caller_in_package()
            if where is not None:
                found.append(("boolean-mask indexing", where))
        return getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", indexing)
    return found


def test_the_spy_sees_a_sync_from_our_package(host_syncs):
    """The check itself: a ``.item()`` made from a package frame is caught."""
    from spectral_moe.routing import RouterStatistics, route

    stats = RouterStatistics(route(torch.randn(6, 4), 2))
    float(stats["mean_prob"].sum())  # from the test: not ours, not recorded
    assert host_syncs == []
    with host_syncs.watch():
        float(stats["mean_prob"].sum())
        exec(compile("t.item()", f"{PACKAGE_DIR}/fake.py", "exec"), {"t": torch.ones(())})
    exec(compile("t.item()", f"{PACKAGE_DIR}/fake.py", "exec"), {"t": torch.ones(())})  # not watched
    assert len(host_syncs) == 1 and host_syncs[0][0] == "item"


@pytest.mark.parametrize("method", sorted(ROUTED))
def test_training_forward_backward_has_no_host_sync(method, host_syncs):
    model = get_peft_model(tiny_llama(), build_peft_config(method, ["q_proj", "v_proj"], **ROUTED[method]))
    model.train()
    ids = torch.randint(3, 64, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    for _ in range(2):  # the second forward too (caches keyed on the first)
        with host_syncs.watch():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            out.loss.backward()
    assert host_syncs == [], host_syncs
    # the router statistics are still there for logging (computed when read)
    from spectral_moe.training.trainer import router_snapshot

    assert router_snapshot(model)["router_load"]


@pytest.mark.parametrize("method", ["fouriermoe", "frame", "moelora"])
def test_evaluation_forward_has_no_host_sync(method, host_syncs):
    model = get_peft_model(tiny_llama(), build_peft_config(method, ["q_proj", "v_proj"], **ROUTED[method]))
    model.eval()
    ids = torch.randint(3, 64, (2, 10))
    with torch.no_grad():
        for _ in range(2):
            with host_syncs.watch():
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert host_syncs == [], host_syncs
