"""evaluation/compare.py: the learning-rate sweep and its edge extension (no training: scores are given)."""

from pathlib import Path

import pytest

from spectral_moe.evaluation.compare import sweep_learning_rate


def _scorer(table):
    calls = []

    def score(mult):
        calls.append(mult)
        return table[mult]

    return score, calls


def test_interior_best_is_not_extended():
    score, calls = _scorer({0.3: 0.2, 1.0: 0.5, 3.0: 0.4})
    assert sweep_learning_rate(score, [0.3, 1, 3], extend=2) == {0.3: 0.2, 1.0: 0.5, 3.0: 0.4}
    assert calls == [0.3, 1, 3]


def test_high_edge_extends_geometrically_until_interior():
    # 3 wins, so 9 is tried; 9 wins, so 27 is tried; 27 loses: 9 is interior, stop
    score, calls = _scorer({0.3: 0.1, 1: 0.2, 3: 0.3, 9: 0.4, 27: 0.35})
    scores = sweep_learning_rate(score, [0.3, 1, 3], extend=5)
    assert calls == [0.3, 1, 3, 9, 27]
    assert max(scores, key=scores.get) == 9


def test_low_edge_extension_and_cap():
    # the low edge keeps winning; extend=1 allows one point beyond 0.3 (0.3 * 0.3 = 0.09) and no more
    score, calls = _scorer({0.09: 0.6, 0.3: 0.5, 1: 0.4, 3: 0.1})
    scores = sweep_learning_rate(score, [3, 1, 0.3], extend=1)
    assert calls == [0.3, 1, 3, 0.09]
    assert set(scores) == {0.09, 0.3, 1, 3}


def test_no_extension_by_default_and_ties_go_to_default():
    score, calls = _scorer({1: 0.5, 3: 0.5})
    assert sweep_learning_rate(score, [1, 3]) == {1: 0.5, 3: 0.5}
    # a tie between 3 and the default 1 goes to 1; 1 is the low edge here, so one step below it is tried
    score, calls = _scorer({0.333333: 0.4, 1: 0.5, 3: 0.5})  # 1/3 to 6 significant digits
    sweep_learning_rate(score, [1, 3], extend=1)
    assert calls == [1, 3, 0.333333]


def test_single_point_sweep_steps_by_ten_and_empty_is_an_error():
    score, calls = _scorer({1: 0.5, 10: 0.4, 0.1: 0.4})
    sweep_learning_rate(score, [1], extend=1)
    assert calls == [1, 0.1, 10]
    with pytest.raises(ValueError, match="must not be empty"):
        sweep_learning_rate(score, [], extend=1)


def test_train_or_reuse_ignores_which_run_scored_the_base_model(tmp_path, monkeypatch):
    import dataclasses
    import json

    import spectral_moe.training.run as run_module
    from spectral_moe.evaluation.compare import _train_or_reuse
    from spectral_moe.training.run import RunConfig

    trained = []

    def fake_train(cfg, progress=True):
        trained.append(cfg)
        metrics = {"tuned": {"macro_acc": 0.5}, **({"base": {"macro_acc": 0.3}} if cfg.eval_base else {})}
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "run_config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
        (Path(cfg.out) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(run_module, "train", fake_train)
    with_base = RunConfig(method="lora", out=str(tmp_path / "a"), eval_base=True)
    assert "base" in _train_or_reuse(with_base) and len(trained) == 1
    # the same run without the base scores: reused (it has them anyway)
    assert "base" in _train_or_reuse(dataclasses.replace(with_base, eval_base=False)) and len(trained) == 1
    # any other difference retrains
    _train_or_reuse(dataclasses.replace(with_base, lr=0.5))
    assert len(trained) == 2

    without = RunConfig(method="lora", out=str(tmp_path / "b"), eval_base=False)
    _train_or_reuse(without)
    _train_or_reuse(without)
    assert len(trained) == 3
    # asking for the base scores of a run that has none: retrained, with them
    assert "base" in _train_or_reuse(dataclasses.replace(without, eval_base=True)) and len(trained) == 4
