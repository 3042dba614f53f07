"""The one pattern of every folder that crosses stages: a run, a baked folder, a stream.

Each is a folder with one JSON file that describes it (run.json, baked.json, manifest.json) and
files it names. Every reader does the same five things, here once:

- the JSON file read through `featvid.limits.read_json` (bounded) and its format name and version
  checked (`read_meta`);
- the fields every folder states, with one meaning each (`Common`): frames, fps, the scene box,
  the grid shape, the planes and the render settings;
- the file records (size and SHA-256 of every file, featvid.field.files) required: a folder with
  none is refused unless the caller asks for a legacy read (`legacy=True`, `featvid
  --legacy-read`, or FEATVID_LEGACY_READ=1), which reads it unverified with a warning;
- `read_file`: a file's bytes checked against its record, a file without one refused;
- `verify()` (every recorded file against its record) and `summary()` (what `featvid info` shows).

Planes and features: a frame holds P = 1 + C planes per vertex, plane 0 raw density and C
features. On disk baked.json and manifest.json call P "channels" and run.json calls C
"num_channels"; in Python every folder says `num_planes` (P) and `num_features` (C), never
"channels".
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from featvid.errors import FormatError
from featvid.field.files import FileRecord, check_record, read_checked
from featvid.field.schema import int_field, number_field, read_aabb, read_grid_shape
from featvid.field.volume import RenderSettings
from featvid.limits import LEGACY_ENV, read_json

log = logging.getLogger(__name__)

MAX_FRAMES = 1_000_000  # what a folder may claim: an edited number cannot make a reader run away
MAX_FEATURES = 64  # C, features per vertex


def legacy_read(legacy: bool | None = None) -> bool:
    """Whether folders without file records may be read: `legacy` when given, else FEATVID_LEGACY_READ=1."""
    if legacy is not None:
        return legacy
    return os.environ.get(LEGACY_ENV, "").strip() == "1"


def read_meta(path: Path, fmt: str, versions: tuple[int, ...], what: str,
              error: type[FormatError] = FormatError) -> dict[str, Any]:
    """The JSON object at `path` (read bounded) of format `fmt` and one of `versions`; `error`
    naming the file otherwise."""
    if not path.is_file():
        raise error(f"{path.parent}: not {what}, or an unfinished one (no {path.name})")
    try:
        d = read_json(path, str(path))
    except FormatError as e:  # e names the path: "PATH: not valid JSON (...)"
        raise error(f"{path}: unreadable ({str(e).removeprefix(f'{path}: ')})") from e
    return check_format(d, str(path), fmt, versions, what, error)


def check_format(d: Any, source: str, fmt: str, versions: tuple[int, ...], what: str,
                 error: type[FormatError] = FormatError) -> dict[str, Any]:
    """`d` when it is a JSON object of format `fmt` and one of `versions`; `error` otherwise (a
    newer version says to upgrade featvid)."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        found = d.get("format") if isinstance(d, dict) else None
        raise error(f"{source}: not {what} (format {str(found)[:40]!r}, expected {fmt!r})")
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > max(versions)
        raise error(f"{source}: {what} of version {str(version)[:20]} is not supported (this featvid reads "
                    f"version{'s' if len(versions) > 1 else ''} {' and '.join(map(str, versions))}"
                    f"{'; upgrade featvid' if newer else ''})")
    return d


@dataclass(frozen=True)
class Common:
    """The fields every folder states. num_planes: P = 1 + C (density, then C features)."""

    num_frames: int
    fps: float
    aabb: torch.Tensor  # [2, 3] float32
    grid_shape: tuple[int, int, int]
    num_planes: int
    render_settings: RenderSettings

    @property
    def num_features(self) -> int:
        return self.num_planes - 1

    @classmethod
    def read(cls, m: dict[str, Any], source: str, frames_key: str, planes_key: str, planes_offset: int) -> "Common":
        """The fields from a folder's JSON `m`: `frames_key` names the frame count, `planes_key`
        the plane count on disk, which is P - `planes_offset` (run.json's "num_channels" is C: 1)."""
        stored = int_field(m, planes_key, source, lo=2 - planes_offset, hi=1 + MAX_FEATURES - planes_offset)
        frames = int_field(m, frames_key, source, lo=1, hi=MAX_FRAMES)
        fps = number_field(m, "fps", source, 0, 1000, lo_open=True)
        return cls(frames, fps, read_aabb(m.get("aabb"), source), read_grid_shape(m.get("grid_shape"), source),
                   stored + planes_offset, RenderSettings.from_dict(m.get("render"), source))


class FolderFormat:
    """A folder read: its common fields, its file records, files read checked against them.

    A subclass reads its JSON (`read_meta`, `Common.read`), calls `_set_common` and
    `_set_records`, and names the files `verify` checks (`recorded_names`)."""

    kind: ClassVar[str] = "folder"  # "run", "baked", "stream": summary()["kind"]
    records_in: ClassVar[str] = "the records"  # where the records are, for messages ("files.json")
    error: ClassVar[type[FormatError]] = FormatError  # what this folder's faults raise

    path: Path
    legacy: bool
    files: dict[str, FileRecord]
    num_frames: int
    fps: float
    aabb: torch.Tensor  # [2, 3]
    grid_shape: tuple[int, int, int]
    num_planes: int  # P = 1 + C
    render_settings: RenderSettings

    @property
    def num_features(self) -> int:
        """C: features per vertex (the planes but density)."""
        return self.num_planes - 1

    def _set_common(self, c: Common) -> None:
        self.num_frames, self.fps, self.aabb = c.num_frames, c.fps, c.aabb
        self.grid_shape, self.num_planes, self.render_settings = c.grid_shape, c.num_planes, c.render_settings

    def _set_records(self, records: dict[str, FileRecord] | None, named: list[str], source: str,
                     empty_ok: bool = False) -> None:
        """Keep the folder's records; refuse a folder with none (None, or {} unless `empty_ok`: a
        run just started) unless this is a legacy read, and a name the folder's JSON names that
        has no record."""
        if records is None or (not records and not empty_ok):
            if not self.legacy:
                raise self.error(f"{self.path}: {self.records_in} records no file hashes (a folder from an older "
                                 f"featvid, or an edited one): refused; read it unverified with "
                                 f"`featvid --legacy-read` or {LEGACY_ENV}=1")
            log.warning("%s: %s records no file hashes (a folder from an older featvid): its files are read "
                        "unverified (legacy read)", self.path, self.records_in)
        self.files = records or {}
        if self.files:
            missing = [n for n in named if n not in self.files]
            if missing:
                raise self.error(f"{source}: files lists no size and SHA-256 for {', '.join(missing[:3])}")

    def read_file(self, name: str, what: str) -> bytes:
        """The bytes of the folder's file `name`, checked against its record; a file without a
        record is refused unless this is a legacy read of a folder without records."""
        if name not in self.files and not (self.legacy and not self.files):
            raise self.error(f"{self.path / name}: not listed in {self.records_in}'s file hashes")
        return read_checked(self.path, name, self.files, self.records_in, what)

    def check_file(self, name: str) -> int:
        """Hash the file `name` on disk in chunks and compare it with its record; its size in bytes."""
        path = self.path / name
        want = self.files.get(name)
        if want is None:
            raise self.error(f"{path}: not listed in {self.records_in}'s file hashes")
        if not path.is_file():
            raise self.error(f"{path}: named in {self.records_in}, missing on disk")
        try:
            if not path.resolve().is_relative_to(self.path.resolve()):  # a link out of the folder is not its file
                raise self.error(f"{path}: a link to {path.resolve()}, outside the folder (refused)")
            found = FileRecord.of_file(path)
        except OSError as e:
            raise self.error(f"{path}: unreadable ({e.strerror or e})") from e
        check_record(path, want, found, self.records_in, self.error)
        return found.bytes

    def recorded_names(self) -> list[str]:
        """The files `verify` checks, in order."""
        return sorted(self.files)

    def verify(self) -> Iterator[tuple[str, int]]:
        """Check every recorded file against its size and SHA-256, yielding (name, bytes) for each
        that matches; the folder's error on the first that does not, or when there are no records
        (a legacy folder: nothing to verify against)."""
        if not self.files:
            raise self.error(f"{self.path}: {self.records_in} records no file hashes (a folder from an older "
                             "featvid): nothing to verify against; make it again")
        for name in self.recorded_names():
            yield name, self.check_file(name)

    def summary(self) -> dict[str, Any]:
        """What `featvid info` shows of every folder; subclasses add their own."""
        return {"kind": self.kind, "path": str(self.path), "frames": self.num_frames, "fps": self.fps,
                "grid_shape": list(self.grid_shape), "planes": self.num_planes, "features": self.num_features,
                "aabb": self.aabb.tolist(), "verified": bool(self.files)}
