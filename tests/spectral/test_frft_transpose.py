import pytest
import torch

from spectral_moe.spectral.frft import frft_matrix, frft_transpose


@pytest.mark.parametrize("method", ["chirp", "hermite", "weighted"])
@pytest.mark.parametrize("d", [7, 8, 33])
def test_transpose_applies_the_matrix_transpose(method, d):
    orders = torch.tensor([[0.3], [0.77], [1.0], [1.4], [2.6]], dtype=torch.float64)
    x = torch.randn(5, 3, d, dtype=torch.float64)
    got = frft_transpose(x, orders, method=method)
    mats = frft_matrix(d, orders[:, 0], method=method)  # [5, d, d]
    ref = x.to(mats.dtype) @ mats  # rows x_i^T M = (M^T x_i)^T
    assert (got - ref).abs().max().item() < 1e-12


def test_chirp_matrix_is_not_symmetric_so_the_transpose_matters():
    m = frft_matrix(16, 0.5, method="chirp")
    assert (m - m.T).abs().max().item() > 1e-3


def test_transpose_gradient_wrt_order_matches_finite_difference():
    x = torch.randn(2, 9, dtype=torch.float64)
    a = torch.tensor(0.63, dtype=torch.float64, requires_grad=True)
    frft_transpose(x, a, method="chirp").abs().square().sum().backward()
    eps = 1e-6
    plus = frft_transpose(x, a.item() + eps, method="chirp").abs().square().sum()
    minus = frft_transpose(x, a.item() - eps, method="chirp").abs().square().sum()
    assert a.grad.item() == pytest.approx(((plus - minus) / (2 * eps)).item(), rel=1e-5, abs=1e-8)
