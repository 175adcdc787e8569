"""benchmarks/mechanism.py at tiny sizes: runs, json and tables written, resume skips, exact targets fit."""

import json

import pytest
import torch

from tests.benchmarks._load import load

mechanism = load("mechanism")

TINY = ["--d", "16", "--steps", "200", "--eval-every", "50", "--probe", "128", "--rank", "2", "--one-lr"]


def _main(tmp_path, *argv):
    return mechanism.main(
        [
            *argv,
            *TINY,
            "--root",
            str(tmp_path / "res"),
            "--md",
            str(tmp_path / "m.md"),
            "--figures",
            str(tmp_path),
        ],
        log=lambda *_: None,
    )


def test_lowrank_writes_results_and_tables_and_lora_fits_its_exact_target(tmp_path):
    # d = 16, budget 64: LoRA r = 2, the planted rank-2 target is exactly representable
    text = _main(tmp_path, "lowrank", "--budget", "64", "--seeds", "2", "--methods", "lora,fourierft")
    files = sorted((tmp_path / "res" / "lowrank" / "r8").glob("*.json"))
    assert [f.name for f in files] == [
        "fourierft_lr0.05_s0.json",
        "fourierft_lr0.05_s1.json",
        "lora_lr0.01_s0.json",
        "lora_lr0.01_s1.json",
    ]
    lora = json.loads(files[2].read_text())
    assert lora["trainable_params"] == 64 and lora["options"]["r"] == 2
    assert lora["rel_loss"][0] == pytest.approx(1.0)  # the update starts at zero
    assert lora["final_rel_loss"] < 0.1  # >10x drop on the exactly representable target
    assert lora["steps"] == [0, 50, 100, 150, 200] and len(lora["rel_loss"]) == 5
    rows = [line for line in text.splitlines() if line.startswith("| lora (r=2)")]
    assert len(rows) == 1 and "| 64 | 0.01 | 2 |" in rows[0]
    md = (tmp_path / "m.md").read_text()
    assert mechanism.MARK_BEGIN in md and "| lora (r=2)" in md
    assert (tmp_path / "mechanism_lowrank_r8.png").stat().st_size > 0

    # resume: every result is present, so nothing trains again, and the markdown's own text is kept
    (tmp_path / "m.md").write_text("# notes\n\n" + md + "\nafter\n")

    def fail(*args, **kwargs):
        raise AssertionError("a finished result was run again")

    original = mechanism.train_run
    mechanism.train_run = fail
    try:
        again = _main(tmp_path, "lowrank", "--budget", "64", "--seeds", "2", "--methods", "lora,fourierft")
    finally:
        mechanism.train_run = original
    assert again == text
    md = (tmp_path / "m.md").read_text()
    assert md.startswith("# notes") and md.endswith("after\n") and md.count(mechanism.MARK_BEGIN) == 1


def test_frame_recovers_a_planted_order(tmp_path):
    # one FRAME expert of rank 2 at order 0.3 (learned from 0.5): the matching method fits it
    text = _main(
        tmp_path, "frame", "--variants", "a0.3", "--budget", "65", "--seeds", "1", "--methods", "frame1,lora"
    )
    run = json.loads((tmp_path / "res" / "frame" / "a0.3" / "frame1_lr0.01_s0.json").read_text())
    assert run["trainable_params"] == 65
    assert run["final_rel_loss"] < 0.1 * run["rel_loss"][0]
    assert abs(run["orders"][0] - 0.3) < 0.05
    assert "| frame1 | 0 | " in text  # the orders table


def test_groups_records_per_group_routing(tmp_path):
    text = _main(
        tmp_path, "groups", "--variants", "grid", "--budget", "128", "--seeds", "1", "--methods", "fouriermoe"
    )
    run = json.loads((tmp_path / "res" / "groups" / "grid" / "fouriermoe_lr0.05_s0.json").read_text())
    load = torch.tensor(run["routing"]["dispatch_fraction"])
    assert load.shape == (4, 4)  # 4 groups x 4 experts
    assert torch.allclose(load.sum(-1), torch.ones(4), atol=1e-3)
    assert len(run["final_rel_loss_per_group"]) == 4
    assert "Routing of fouriermoe" in text and "| group 3 (band 3) |" in text


def test_targets_have_the_planted_structure():
    setup = mechanism.Setup(d=16, budget=128, rank=2)
    low = mechanism.make_task("lowrank", "r8", setup, 0).delta[0]
    assert torch.linalg.matrix_rank(low.double(), rtol=1e-5).item() == 2
    assert low.norm() ** 2 == pytest.approx(mechanism.TARGET_POWER * 16, rel=1e-5)
    frame = mechanism.make_task("frame", "a0.7", setup, 0).delta[0]
    assert torch.linalg.matrix_rank(frame.double(), rtol=1e-5).item() == 4  # Re of a complex rank 2
    band = mechanism.make_task("band", "dense-high", setup, 0).delta[0]
    spectrum = torch.fft.fft2(band.double()).abs().flatten()
    from spectral_moe.spectral import bands

    inside = bands.band_partition(16, 16, 4, "radial")[3]
    support = torch.cat([inside, bands.mirror_index(inside, 16, 16)])
    outside = torch.ones(256, dtype=torch.bool)
    outside[support] = False
    assert spectrum[outside].max() < 1e-6 * spectrum.max()  # energy only on band 3 and its mirror


def test_capacity_floors():
    setup = {**vars(mechanism.Setup(d=16, budget=128, rank=2))}

    def floor(experiment, variant, method):
        options = mechanism.method_options(method, mechanism.Setup(**setup))
        run = dict(
            experiment=experiment, variant=variant, method=method, seed=0, setup=setup, options=options
        )
        return mechanism.capacity_floor(run)

    assert floor("lowrank", "r8", "lora") < 1e-10  # rank 2 target, LoRA r = 4
    assert floor("band", "grid", "fouriermoe") < 1e-10  # the target sits on FourierMoE's expert-1 positions
    assert 0.5 < floor("band", "dense-high", "fouriermoe") < 1  # 8 of band 3's 31 positions
    assert 0 < floor("band", "grid", "fourierft") < 1
    assert floor("frame", "a0.3", "frame1") is None


def test_folded_order_names_orders_that_fit_the_same_targets():
    a_mat, b_mat = torch.randn(2, 16, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    parity = torch.eye(16, dtype=torch.float64)[(-torch.arange(16)) % 16]
    base = mechanism.delta_weight(a_mat, b_mat, 0.7, "weighted")
    for a in (1.3, -0.7, 4.7, -1.3):
        assert mechanism.folded_order(a) == pytest.approx(0.7)
        other = mechanism.delta_weight(a_mat, b_mat, a, "weighted")
        assert torch.allclose(other, base, atol=1e-12) or torch.allclose(
            other, parity @ base @ parity, atol=1e-12
        )
    assert mechanism.folded_order(0.3) == pytest.approx(0.3)
