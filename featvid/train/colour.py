"""Per-camera colour correction of the training views (issue 25, "Real cameras").

Every camera of a real rig has its own exposure and white balance. Left alone, the fit explains
those differences with the geometry and the MLP's view-dependent colour, and the held-out views pay
for it. Each fitted view v gets an affine colour transform, applied to the rendered colour of its
rays in the photometric loss only:

    pred'  = A_v @ pred + b_v        A_v [3, 3], initialised to I; b_v [3], initialised to 0

and a regulariser pulls every (A_v, b_v) towards identity, so what all cameras share stays in the
model. The correction never goes into the stream: held-out views are rendered by the model as is.
It lives in the run folder (COLOUR_FILE, safetensors: no pickle) so a resumed run reloads it.
"""
from __future__ import annotations

import torch
from safetensors.torch import load, save

from featvid.errors import ConfigError, FormatError
from featvid.field.files import canonical_safetensors, safetensors_header

COLOUR_FILE = "colour.safetensors"  # in the run folder, recorded in files.json
_FORMAT = "featvid-camera-colour"
_MAX_CAMERAS = 100_000  # a bound on what a file may claim, checked before anything is made


class CameraColour(torch.nn.Module):
    """An affine colour transform per training camera: matrix [V, 3, 3] and offset [V, 3]."""

    def __init__(self, num_cameras: int) -> None:
        super().__init__()
        if not 1 <= num_cameras <= _MAX_CAMERAS:
            raise ConfigError(f"CameraColour: {num_cameras} cameras (1..{_MAX_CAMERAS})")
        self.matrix = torch.nn.Parameter(torch.eye(3).repeat(num_cameras, 1, 1))  # [V, 3, 3]
        self.offset = torch.nn.Parameter(torch.zeros(num_cameras, 3))  # [V, 3]

    @property
    def num_cameras(self) -> int:
        return self.matrix.shape[0]

    def apply(self, rgb: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """Colours [N, 3] of rays from cameras [N] (long, indices into the fitted views) -> [N, 3]."""
        A = self.matrix[camera]  # [N, 3, 3]
        return (A @ rgb.unsqueeze(-1)).squeeze(-1) + self.offset[camera]

    def regulariser(self) -> torch.Tensor:
        """Squared distance from identity, per camera, averaged over cameras: mean_v(|A_v - I|_F^2 + |b_v|^2)."""
        eye = torch.eye(3, device=self.matrix.device, dtype=self.matrix.dtype)
        return ((self.matrix - eye) ** 2).sum(dim=(1, 2)).mean() + (self.offset ** 2).sum(dim=1).mean()

    # -- the run folder's file ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """float32 safetensors, the header in a stable order (the same values give the same SHA-256)."""
        tensors = {"matrix": self.matrix.detach().float().cpu().contiguous(),
                   "offset": self.offset.detach().float().cpu().contiguous()}
        return canonical_safetensors(save(tensors, metadata={"format": _FORMAT}))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "colour correction",
                   num_cameras: int | None = None) -> "CameraColour":
        """Rebuild from `to_bytes` output; FormatError when unreadable, non-finite, misshapen, or not
        for `num_cameras` cameras (when given)."""
        header = safetensors_header(data, source)  # sizes checked against len(data) before any tensor
        if (header.get("__metadata__") or {}).get("format") != _FORMAT:
            raise FormatError(f"{source}: not a featvid camera colour file")
        shapes = {k: (header.get(k) or {}).get("shape") for k in ("matrix", "offset")}  # checked dicts
        m, o = shapes["matrix"], shapes["offset"]
        if not (isinstance(m, list) and len(m) == 3 and m[1:] == [3, 3] and o == [m[0], 3]
                and 1 <= m[0] <= _MAX_CAMERAS and all(header[k]["dtype"] == "F32" for k in shapes)):
            raise FormatError(f"{source}: expected float32 matrix [V, 3, 3] and offset [V, 3], got {m} and {o}")
        if num_cameras is not None and m[0] != num_cameras:
            raise FormatError(f"{source}: holds {m[0]} cameras, the run fits {num_cameras}")
        try:
            tensors = load(data)
        except Exception as e:  # safetensors' own errors on a corrupt file
            raise FormatError(f"{source}: unreadable ({e})") from e
        if not all(torch.isfinite(tensors[k]).all() for k in shapes):
            raise FormatError(f"{source}: holds NaN or infinite values")
        colour = cls(m[0])
        with torch.no_grad():
            colour.matrix.copy_(tensors["matrix"])
            colour.offset.copy_(tensors["offset"])
        return colour.requires_grad_(False)
