"""A tiny ``spectral-moe train`` (training, then scoring the base and tuned model) raises no FutureWarning
of ours: none from our own code, none from a deprecated name we pass to or read from a dependency
(transformers 5.24: ``past_key_values`` → ``cache``, ``gradient_checkpointing*`` →
``activation_checkpointing*``).

The one FutureWarning left is raised by a dependency's own code, not by a name we use; it is listed in
``THIRD_PARTY`` with where it comes from, and any other one fails the test, named with the innermost
frame of ours below it.
"""

from __future__ import annotations

import traceback
import warnings

from spectral_moe.cli import main
from tests.helpers import save_tiny_llama, write_jsonl_task

# (message fragment, file of the dependency that raises it from its own code)
THIRD_PARTY = [
    # peft 0.21 PeftModel.__init__ reads `model.is_gradient_checkpointing` (an alias transformers 5.23
    # deprecated) in get_peft_model / PeftModel.from_pretrained; peft is pinned <0.22.
    ("`is_gradient_checkpointing` is deprecated", "peft/peft_model.py"),
]


def _record_future_warnings(run) -> list[tuple[str, list[str]]]:
    """Run ``run()``; return every FutureWarning as ``(message, stack)`` (stack: ``file:line name``)."""
    seen: list[tuple[str, list[str]]] = []

    def show(message, category, filename, lineno, file=None, line=None):
        stack = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]]
        seen.append((str(message), stack))

    with warnings.catch_warnings():
        warnings.simplefilter("always", FutureWarning)
        warnings.showwarning = show  # restored by catch_warnings
        run()
    return seen


def _is_known_third_party(message: str, stack: list[str]) -> bool:
    return any(text in message and any(where in f for f in stack) for text, where in THIRD_PARTY)


def test_tiny_train_raises_no_future_warning_of_ours(tmp_path):
    model = save_tiny_llama(tmp_path / "model")
    task = write_jsonl_task(tmp_path / "task.jsonl", n=40)
    argv = ["train", "--model", model, "--tasks", f"jsonl:{task}", "--out", str(tmp_path / "run"), "--quiet"]
    argv += ["--method", "fouriermoe", "--steps", "2", "--set", "batch_size=4"]
    argv += ["--set", "adapter.num_experts=4", "--set", "adapter.n_frequency=8"]
    rc: list[int] = []
    seen = _record_future_warnings(lambda: rc.append(main(argv)))
    assert rc == [0]
    ours = []
    for message, stack in seen:
        if _is_known_third_party(message, stack):
            continue
        caller = [f for f in stack if "spectral_moe" in f]
        ours.append(f"{message} (from {caller[-1] if caller else stack[-1]})")
    assert not ours, "\n".join(sorted(set(ours)))
