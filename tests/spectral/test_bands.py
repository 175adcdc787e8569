import pytest
import torch

from spectral_moe.spectral import bands

SHAPES = [(4, 4), (5, 7), (6, 3), (8, 5), (16, 12), (9, 9)]


@pytest.mark.parametrize("shape", SHAPES)
def test_half_plane_is_one_representative_per_pair(shape):
    d_out, d_in = shape
    hp = bands.half_plane(d_out, d_in)
    assert hp.numel() == bands.half_plane_size(d_out, d_in)
    mirror = bands.mirror_index(hp, d_out, d_in)
    assert not (mirror == hp).any()  # no self-conjugate position
    together = torch.cat([hp, mirror])
    assert together.unique().numel() == together.numel()  # representatives and partners are disjoint
    flat = torch.arange(d_out * d_in)
    self_conj = int((bands.mirror_index(flat, d_out, d_in) == flat).sum())
    assert together.numel() + self_conj == d_out * d_in  # covers the whole plane


@pytest.mark.parametrize("shape", SHAPES)
def test_radial_bands_equal_count_and_ordered(shape):
    d_out, d_in = shape
    num = 3
    part = bands.band_partition(d_out, d_in, num, "radial")
    assert part.shape == (num, bands.half_plane_size(d_out, d_in) // num)
    rho = bands.radial_frequency(d_out, d_in).flatten()
    r = rho[part]
    for z in range(num - 1):
        assert r[z].max() <= r[z + 1].min()
    assert part.unique().numel() == part.numel()


def test_uniform_bands_share_the_half_plane():
    part = bands.band_partition(6, 10, 4, "uniform")
    assert part.shape[0] == 4
    for z in range(4):
        assert torch.equal(part[z], bands.half_plane(6, 10))


@pytest.mark.parametrize("layout", ["radial", "uniform"])
def test_sample_positions_distinct_in_band_and_seeded(layout):
    d_out, d_in, num, n = 12, 10, 4, 5
    rows, cols = bands.sample_positions(d_out, d_in, num, n, layout, 3)
    assert rows.shape == cols.shape == (num, n)
    flat = rows * d_in + cols
    part = bands.band_partition(d_out, d_in, num, layout)
    for z in range(num):
        assert flat[z].unique().numel() == n
        assert torch.isin(flat[z], part[z]).all()
    again = bands.sample_positions.__wrapped__(d_out, d_in, num, n, layout, 3)
    assert torch.equal(again[0], rows) and torch.equal(again[1], cols)
    other = bands.sample_positions(d_out, d_in, num, n, layout, 4)
    assert not torch.equal(other[0] * d_in + other[1], flat)


def test_n_frequency_larger_than_band_is_an_error():
    cap = bands.band_capacity(8, 8, 4, "radial")
    assert cap == bands.half_plane_size(8, 8) // 4
    bands.sample_positions(8, 8, 4, cap)
    with pytest.raises(ValueError, match="n_frequency"):
        bands.sample_positions(8, 8, 4, cap + 1)


def test_unknown_layout_is_an_error():
    with pytest.raises(ValueError, match="band_layout"):
        bands.band_partition(8, 8, 2, "rings")
