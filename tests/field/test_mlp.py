"""The tiny MLP's file: float32 or float16 weights, extra tensors ignored, bad files refused."""
import pytest
import torch

from featvid.errors import FormatError
from featvid.field.mlp import MLPConfig, TinyMLP


def test_save_load_float32_and_float16(tmp_path):
    torch.manual_seed(0)
    mlp = TinyMLP(MLPConfig(in_features=5, hidden=16, layers=2, view_freqs=1)).eval()
    f, d = torch.randn(64, 5), torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    mlp.save(tmp_path / "a.safetensors")
    (tmp_path / "h.safetensors").write_bytes(mlp.to_bytes(half=True, extra={"feature_basis": torch.eye(5)}))
    a, h = TinyMLP.load(tmp_path / "a.safetensors"), TinyMLP.load(tmp_path / "h.safetensors")
    assert a.config == h.config == mlp.config
    with torch.no_grad():
        assert torch.equal(a(f, d), mlp(f, d))
        assert (h(f, d) - mlp(f, d)).abs().max() < 2e-3  # float16 weights: ~3 significant digits
    assert next(h.parameters()).dtype == torch.float32
    assert (tmp_path / "h.safetensors").stat().st_size < 0.7 * (tmp_path / "a.safetensors").stat().st_size


def test_missing_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    mlp = TinyMLP(MLPConfig(in_features=3, hidden=8))
    t = {k: v for k, v in mlp.state_dict().items() if k != "out.bias"}
    import json
    from dataclasses import asdict

    save_file(t, str(tmp_path / "m.safetensors"), metadata={"format": "featvid-mlp", "config": json.dumps(asdict(mlp.config))})
    with pytest.raises(FormatError, match="not a readable"):
        TinyMLP.load(tmp_path / "m.safetensors")
