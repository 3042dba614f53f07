"""Atomic writes and metrics."""
import math

import pytest
import torch

from featvid.atomic import atomic_path, write_json
from featvid.metrics import bytes_per_frame, psnr, ssim


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text().strip().startswith("{") and '"v": 1' in p.read_text()
    assert [x.name for x in tmp_path.iterdir()] == ["a.json"], "no temporary file may stay behind"


def test_psnr_ssim():
    a = torch.rand(32, 32, 3)
    assert psnr(a, a) == math.inf and abs(ssim(a, a) - 1) < 1e-6
    b = (a + 0.1).clamp(0, 1)
    assert 15 < psnr(a, b) < 25
    assert ssim(a, torch.rand(32, 32, 3)) < 0.5


def test_bytes_per_frame(tmp_path):
    (tmp_path / "x").write_bytes(b"1" * 100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "y").write_bytes(b"1" * 50)
    assert bytes_per_frame(tmp_path, 3) == 50
