"""3D Gaussian Splatting PLY files: read and write, in the layout the 3DGS family writes.

One `vertex` element, binary little-endian, properties `x y z`, `f_dc_0..2`, `f_rest_0..M-1`
(M = 0, 9, 24 or 45: SH degree 0..3), `opacity`, `scale_0..2`, `rot_0..3`. Reading takes any
scalar type per property (converted to float32) and skips other properties (`nx ny nz`, ...) and
elements after `vertex`. Everything is checked before the data is read: the header (at most
MAX_HEADER bytes, ASCII), the format, the properties, and the vertex count against the file's
size; then exactly count * stride bytes are read and viewed with numpy. Every fault is one
FormatError line naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from featvid.atomic import write_bytes
from featvid.errors import FormatError
from featvid.gaussians.model import Gaussians, sh_coefficients

MAX_HEADER = 64 * 1024  # bytes: real headers are a few hundred
MAX_VERTICES = 1 << 26  # per file: 67M Gaussians, beyond any scene (and 16 GB of SH3 floats)

# PLY scalar type names (both spellings) -> little-endian numpy dtype
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}


def _required(num_rest: int) -> list[str]:
    return (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(num_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _read_header(f, src: str) -> tuple[list[str], int]:
    """(the header's lines after 'ply', the header's length in bytes), reading at most MAX_HEADER bytes."""
    head = f.read(MAX_HEADER)
    if not head.startswith(b"ply\n") and not head.startswith(b"ply\r\n"):
        raise FormatError(f"{src}: not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header\n")
    if end < 0:
        raise FormatError(f"{src}: no end_header within the first {MAX_HEADER} bytes (not a PLY file, or cut short)")
    length = end + len(b"end_header\n")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{src}: the PLY header is not ASCII text") from None
    return [ln.strip() for ln in text.replace("\r", "").split("\n")[1:]], length


def _parse(lines: list[str], src: str) -> tuple[int, np.dtype]:
    """The vertex count and the vertex record's dtype; FormatError for anything but a binary
    little-endian file whose first element is `vertex` of scalar properties."""
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for ln in lines:
        parts = ln.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1:]
        elif parts[0] == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise FormatError(f"{src}: malformed PLY line {ln[:60]!r}")
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise FormatError(f"{src}: PLY property before any element")
            if len(parts) >= 2 and parts[1] == "list":
                elements[-1][2].append(("list", ln))
                continue
            if len(parts) != 3 or parts[1] not in _TYPES:
                raise FormatError(f"{src}: malformed PLY property line {ln[:60]!r}")
            elements[-1][2].append((parts[2], _TYPES[parts[1]]))
        else:
            raise FormatError(f"{src}: unknown PLY header line {ln[:60]!r}")
    if fmt is None:
        raise FormatError(f"{src}: the PLY header states no format")
    if fmt[:1] != ["binary_little_endian"]:
        raise FormatError(f"{src}: PLY format {' '.join(fmt)[:40]!r}; 3DGS PLY must be binary_little_endian")
    if not elements or elements[0][0] != "vertex":
        raise FormatError(f"{src}: the first PLY element must be 'vertex'")
    _, count, props = elements[0]
    if any(name == "list" for name, _ in props):
        raise FormatError(f"{src}: the vertex element has a list property (3DGS vertices hold scalars only)")
    names = [n for n, _ in props]
    if len(set(names)) != len(names):
        raise FormatError(f"{src}: the vertex element names a property twice")
    if count > MAX_VERTICES:
        raise FormatError(f"{src}: {count} vertices, more than the {MAX_VERTICES} a file may hold")
    return count, np.dtype([(n, t) for n, t in props])


def _sh_degree(names: set[str], src: str) -> int:
    num_rest = sum(1 for n in names if n.startswith("f_rest_"))
    for degree in range(4):
        if 3 * (sh_coefficients(degree) - 1) == num_rest:
            return degree
    raise FormatError(f"{src}: {num_rest} f_rest properties; SH degrees 0..3 have 0, 9, 24 or 45")


def _checked_header(f, size: int, src: str) -> tuple[int, np.dtype, int, int]:
    """(vertex count, record dtype, SH degree, header length) of an open PLY of `size` bytes, checked
    against the size before any vertex is read."""
    lines, header_len = _read_header(f, src)
    count, dtype = _parse(lines, src)
    names = set(dtype.names or ())
    degree = _sh_degree(names, src)
    missing = [n for n in _required(3 * (sh_coefficients(degree) - 1)) if n not in names]
    if missing:
        raise FormatError(f"{src}: the PLY vertex lacks propert{'ies' if len(missing) > 1 else 'y'} "
                          f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    need = count * dtype.itemsize
    if header_len + need > size:  # checked before anything is read or allocated
        raise FormatError(f"{src}: the header states {count} vertices ({need} bytes), the file holds "
                          f"{max(size - header_len, 0)} bytes of data (truncated or not this file's count)")
    if count == 0:
        raise FormatError(f"{src}: the PLY holds no vertices")
    return count, dtype, degree, header_len


def read_ply_header(path: str | Path) -> tuple[int, int]:
    """(Gaussian count, SH degree) of a 3DGS PLY, from its header (checked as `read_ply` does, the
    vertex data only for its size)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            count, _, degree, _ = _checked_header(f, path.stat().st_size, str(path))
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror or e})") from e
    return count, degree


def read_ply(path: str | Path) -> Gaussians:
    """One frame's Gaussians from a 3DGS PLY file (see the module docstring); FormatError naming
    the file for anything malformed, NaN or infinite values included."""
    path = Path(path)
    src = str(path)
    try:
        with open(path, "rb") as f:
            count, dtype, degree, header_len = _checked_header(f, path.stat().st_size, src)
            need = count * dtype.itemsize
            f.seek(header_len)
            data = f.read(need)
    except OSError as e:
        raise FormatError(f"{src}: cannot read ({e.strerror or e})") from e
    if len(data) != need:
        raise FormatError(f"{src}: {len(data)} bytes of vertex data, the header states {need} (cut short)")
    rec = np.frombuffer(data, dtype=dtype, count=count)

    def cols(*keys: str) -> np.ndarray:
        return np.stack([rec[k].astype(np.float32) for k in keys], axis=1)  # [N, len(keys)]

    k = sh_coefficients(degree)
    dc = cols("f_dc_0", "f_dc_1", "f_dc_2")  # [N, 3]
    rest = np.zeros((count, 0, 3), dtype=np.float32)  # SH degree 0: no rest
    if k > 1:
        rest = cols(*(f"f_rest_{i}" for i in range(3 * (k - 1)))).reshape(count, 3, k - 1).transpose(0, 2, 1)  # [N, K-1, 3]
    arrays = {"means": cols("x", "y", "z"), "sh": np.concatenate([dc[:, None, :], rest], axis=1),
              "opacity": rec["opacity"].astype(np.float32), "log_scales": cols("scale_0", "scale_1", "scale_2"),
              "quats": cols("rot_0", "rot_1", "rot_2", "rot_3")}
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            bad = int(np.flatnonzero(~np.isfinite(a.reshape(count, -1)).all(axis=1))[0])
            raise FormatError(f"{src}: vertex {bad} has a NaN or infinite {name} value")
    g = Gaussians(*(torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in
                    ("means", "sh", "opacity", "log_scales", "quats")))
    return g.validate()


def ply_bytes(g: Gaussians) -> bytes:
    """The 3DGS PLY bytes of `g` (float32, with nx ny nz = 0 as the 3DGS trainer writes them)."""
    g.validate()
    n, k = g.count, g.sh.shape[1]
    names = ["x", "y", "z", "nx", "ny", "nz"] + _required(3 * (k - 1))[3:]
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    rest = g.sh[:, 1:, :].permute(0, 2, 1).reshape(n, 3 * (k - 1))  # [N, 3(K-1)]: channel-major (PLY order)
    cols = torch.cat([g.means, torch.zeros(n, 3), g.sh[:, 0, :], rest, g.opacity[:, None], g.log_scales, g.quats],
                     dim=1)  # [N, 62 for SH3]
    return header.encode("ascii") + np.ascontiguousarray(cols.detach().cpu().float().numpy(), dtype="<f4").tobytes()


def write_ply(path: str | os.PathLike, g: Gaussians) -> None:
    """Write `g` as a binary little-endian 3DGS PLY, atomically."""
    write_bytes(path, ply_bytes(g))


def ply_frames(folder: str | Path) -> list[Path]:
    """The PLY frames of a sequence folder: its *.ply files in name order (FormatError if none)."""
    folder = Path(folder)
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".ply" and p.is_file()) if folder.is_dir() else []
    if not frames:
        raise FormatError(f"{folder}: holds no .ply frames")
    return frames


def is_ply_folder(folder: str | Path) -> bool:
    """Whether `folder` is a sequence of PLY frames (a folder holding *.ply files)."""
    folder = Path(folder)
    return folder.is_dir() and any(p.suffix.lower() == ".ply" for p in folder.iterdir())
