import pytest

from spectral_moe.cache import replace_dir


def test_replace_dir_swaps_in_a_complete_folder(tmp_path):
    final = tmp_path / "adapter"
    with replace_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with replace_dir(final) as tmp:
        assert not (final / "b.txt").exists()
        (tmp / "b.txt").write_text("two")
        assert (final / "a.txt").read_text() == "one"  # the old folder is untouched while writing
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary folders left


def test_replace_dir_failure_leaves_the_old_folder(tmp_path):
    final = tmp_path / "adapter"
    with replace_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), replace_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (final / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
