"""Activation-ratio bands on hand-made inputs."""
import pandas as pd
import pytest
import torch

from curvmem.activations import band_slices, band_strength, ratio_rows, right_singular_vectors


def test_band_slices_cover_every_direction_once():
    for d in (4, 10, 96, 3072):
        slices = band_slices(d)
        covered = [i for _, sl in slices for i in range(d)[sl]]
        assert covered == list(range(d))
    assert [sl.stop - sl.start for _, sl in band_slices(20)] == [2, 3, 5, 10]


def test_band_strength_and_ratio_by_hand():
    d = 20
    Q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    top, bottom = Q[:, 0], Q[:, 15]  # band "top 10%" and band "bottom 50%"
    clean = torch.stack([2 * top, 2 * top]).float()
    memorized = torch.stack([top + 3 * bottom]).float()
    s = band_strength(memorized, Q)
    torch.testing.assert_close(s["top 10%"], torch.tensor([1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(s["bottom 50%"], torch.tensor([3.0]), atol=1e-5, rtol=0)
    rows = {r["band"]: r for r in ratio_rows({"fc": memorized}, {"fc": clean}, {"fc": {"kfac": Q}})}
    assert abs(rows["top 10%"]["ratio"] - 0.5) < 1e-5  # 1 / 2
    assert rows["bottom 50%"]["clean"] < 1e-5


def test_right_singular_vectors_order():
    W = torch.diag(torch.tensor([1.0, 5.0, 3.0]))
    V = right_singular_vectors(W)
    assert torch.allclose(V.abs(), torch.eye(3)[:, [1, 2, 0]])


@pytest.mark.parametrize("blocks", [4, 32])
def test_band_figure_stays_readable_at_paper_depth(tmp_path, blocks):
    """Fig. 2 at OLMo-2-7B's 32 layers x 2 MLP inputs: every module keeps a row (or bar group) at
    least 20 pixels wide, so its label and values can be read."""
    from PIL import Image

    from curvmem.plotting import activation_bands

    rows = [{"module": f"model.layers.{i}.mlp.{m}", "basis": basis, "band": band, "memorized": 1.0, "clean": 1.0,
             "ratio": 1.0 + 0.01 * i} for i in range(blocks) for m in ("gate_proj", "up_proj")
            for basis in ("kfac", "svd") for band in ("top 10%", "10-25%", "25-50%", "bottom 50%")]
    activation_bands(pd.DataFrame(rows), tmp_path, "bands.png", "title")
    width, height = Image.open(tmp_path / "bands.png").size
    assert max(width / 2, height) / (2 * blocks) >= 20, (width, height)
