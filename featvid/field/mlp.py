"""The tiny MLP shared by all frames: accumulated feature + encoded view direction -> RGB.

Small enough for a fragment shader (two hidden layers of 16-64). Its file carries its own
architecture in the safetensors metadata, so it rebuilds itself without a config.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from featvid.atomic import write_bytes
from featvid.errors import ConfigError, FormatError
from featvid.field.files import canonical_safetensors, safetensors_header
from featvid.limits import read_json


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of the tiny MLP."""

    in_features: int = 6  # C, the feature channels of the grid (the trainer's default num_channels)
    hidden: int = 32  # width of each hidden layer
    layers: int = 2  # hidden layers
    view_freqs: int = 2  # sin/cos frequencies of the view direction (0: direction ignored)

    @property
    def in_dim(self) -> int:
        return self.in_features + 3 + 6 * self.view_freqs

    def validate(self) -> "MLPConfig":
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in asdict(self).values())
        if not (ok and 1 <= self.layers <= 4 and 4 <= self.hidden <= 128 and 0 <= self.view_freqs <= 6
                and 1 <= self.in_features <= 64):
            raise ConfigError(f"tiny MLP config out of range: {self}")
        return self

    def to_dict(self) -> dict[str, int]:
        """The architecture as the formats write it (run, baked folder, manifest, MLP file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "MLP") -> "MLPConfig":
        """The architecture from a dict that holds it (other keys, such as "file", are ignored);
        FormatError naming `source` when it is missing or out of range."""
        try:
            return cls(**{k: d[k] for k in ("in_features", "hidden", "layers", "view_freqs")}).validate()
        except (KeyError, TypeError, ConfigError) as e:
            raise FormatError(f"{source}: not a tiny MLP architecture ({e})") from e


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
        # the header in a stable order: the same weights always give the same bytes (and SHA-256)
        return canonical_safetensors(save(tensors, metadata={"format": "featvid-mlp",
                                                             "config": json.dumps(asdict(self.config))}))

    def save(self, path: str | Path, half: bool = False) -> None:
        """Write weights + architecture as safetensors, atomically."""
        write_bytes(path, self.to_bytes(half))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "MLP", expect: MLPConfig | None = None) -> "TinyMLP":
        """Rebuild an MLP from its file's bytes (safetensors: no pickle); FormatError when the file
        is unreadable, holds non-finite weights, or is not the architecture `expect` names."""
        try:
            meta = safetensors_header(data, source).get("__metadata__") or {}  # sizes checked against len(data)
            config = MLPConfig.from_dict(read_json(meta["config"], f"{source}: config"), source)
            model = cls(config)
            tensors = load(data)
            # float16 or float32 on disk; copied into float32 parameters. Other tensors are not ours.
            model.load_state_dict({k: tensors[k] for k in model.state_dict() if k in tensors})
        except Exception as e:  # ours (header, config) and safetensors' several types on corrupt files
            raise FormatError(f"{source}: not a readable featvid MLP ({str(e).removeprefix(source + ': ')})") from e
        if expect is not None and config != expect:
            raise FormatError(f"{source}: the MLP is {config.to_dict()}, expected {expect.to_dict()}")
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise FormatError(f"{source}: the MLP holds NaN or infinite weights")
        return model.eval()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", expect: MLPConfig | None = None) -> "TinyMLP":
        """Read an MLP file (see `from_bytes`) onto `device`."""
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"{path}: MLP file is missing")
        return cls.from_bytes(path.read_bytes(), str(path), expect).to(device)
