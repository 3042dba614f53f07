"""The tiny MLP shared by all frames: accumulated feature + encoded view direction -> RGB.

Small enough for a fragment shader (two hidden layers of 16-64). Its file carries its own
architecture in the safetensors metadata, so it rebuilds itself without a config.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from featvid.atomic import write_bytes
from featvid.errors import ConfigError, StreamError


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of the tiny MLP."""

    in_features: int = 12  # C, the feature channels of the grid
    hidden: int = 32  # width of each hidden layer
    layers: int = 2  # hidden layers
    view_freqs: int = 2  # sin/cos frequencies of the view direction (0: direction ignored)

    @property
    def in_dim(self) -> int:
        return self.in_features + 3 + 6 * self.view_freqs

    def validate(self) -> "MLPConfig":
        if not (1 <= self.layers <= 4 and 4 <= self.hidden <= 128 and 0 <= self.view_freqs <= 6 and self.in_features >= 1):
            raise ConfigError(f"tiny MLP config out of range: {self}")
        return self


def encode_direction(d: torch.Tensor, freqs: int) -> torch.Tensor:
    """[N, 3] unit directions -> [N, 3 + 6 * freqs]: d, then sin(2^l d), cos(2^l d) for l < freqs."""
    parts = [d]
    for l in range(freqs):
        parts += [torch.sin(d * (2.0**l)), torch.cos(d * (2.0**l))]
    return torch.cat(parts, dim=-1)


class TinyMLP(torch.nn.Module):
    """rgb = sigmoid(W_out relu(... relu(W_0 [feature, enc(dir)]))). Deferred: one call per ray."""

    def __init__(self, config: MLPConfig = MLPConfig()) -> None:
        super().__init__()
        self.config = config.validate()
        dims = [config.in_dim] + [config.hidden] * config.layers
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = torch.nn.Linear(dims[-1], 3)

    def forward(self, feature: torch.Tensor, viewdir: torch.Tensor) -> torch.Tensor:
        """feature [N, C], viewdir [N, 3] unit -> rgb [N, 3] in (0, 1)."""
        h = torch.cat([feature, encode_direction(viewdir, self.config.view_freqs).to(feature.dtype)], dim=-1)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return torch.sigmoid(self.out(h))

    def to_bytes(self, half: bool = False, extra: dict[str, torch.Tensor] | None = None) -> bytes:
        """The MLP file's bytes: weights (float32, or float16 when `half`) + architecture in the
        metadata, plus `extra` float32 tensors that the loader ignores (a stream's feature basis)."""
        dtype = torch.float16 if half else torch.float32
        tensors = {k: v.detach().to(dtype).cpu().contiguous() for k, v in self.state_dict().items()}
        tensors.update({k: v.detach().float().cpu().contiguous() for k, v in (extra or {}).items()})
        return save(tensors, metadata={"format": "featvid-mlp", "config": json.dumps(asdict(self.config))})

    def save(self, path: str | Path, half: bool = False) -> None:
        """Write weights + architecture as safetensors, atomically."""
        write_bytes(path, self.to_bytes(half))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TinyMLP":
        path = Path(path)
        if not path.is_file():
            raise StreamError(f"{path}: MLP file is missing")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            config = MLPConfig(**json.loads(meta["config"]))
            model = cls(config)
            tensors = load_file(str(path))
            # float16 or float32 on disk; copied into float32 parameters. Other tensors are not ours.
            model.load_state_dict({k: tensors[k] for k in model.state_dict() if k in tensors})
        except Exception as e:
            raise StreamError(f"{path}: not a readable featvid MLP ({e})") from e
        return model.to(device).eval()
