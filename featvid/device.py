"""Choosing the torch device: one rule for the trainer, the renderers and the CLI."""
from __future__ import annotations

import torch

from featvid.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU; 'cpu'; 'cuda[:n]' (an error without a GPU)."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU (use --device cpu or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r} (choose auto, cpu or cuda)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r} (choose auto, cpu or cuda)") from e
