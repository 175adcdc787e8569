import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def eager_kernels(monkeypatch):
    """``fused_kernels=True`` runs ``spectral.fourier_fused``'s kernels uncompiled (their formulas, without
    the compile time); yields the names of the kernels called, in order."""
    from spectral_moe.spectral import fourier, fourier_fused

    calls = []

    def eager(name, *args, compiled=True):
        calls.append(name)
        return fourier_fused.run_fused(name, *args, compiled=False)

    monkeypatch.setattr(fourier, "run_fused", eager)
    return calls
