"""Where a command may write: the one rule every command and the batch runner apply to their outputs.

No write destroys what this command did not write. So, before anything is touched:

- an output folder is new, empty, or a folder of the same kind (a stream folder for encode, a baked
  folder for bake, a run folder for train, ...): it holds nothing but the names that kind of output
  writes (`OutputKind`); anything else there is refused;
- an output is never an input, inside an input, nor holds one;
- an output is a regular file or a folder: a FIFO, a device or a socket is refused (a write would
  replace it), and so is a file where a folder is asked for or the other way round;
- a symlink output is judged by what it points to; a link inside an output folder makes it foreign
  (a clean-up never follows one).

An output file (an MP4, a JSON report) is a new path or an existing regular file. A write the file
system then refuses (read-only, full) is featvid.atomic's OutputError of one line.
"""
from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from featvid.atomic import special_kind, write_failed
from featvid.errors import OutputError

# The file that marks each kind of featvid folder (written first or last by its command).
MARKS = {"run.json": "a featvid run", "baked.json": "a featvid bake", "manifest.json": "a featvid stream",
         "transforms_train.json": "a dataset", "demo.json": "a featvid demo"}
TEMPORARY = ".*.tmp"  # featvid.atomic's temporaries: what a killed write leaves; any kind may hold them

PathLike = str | os.PathLike


@dataclass(frozen=True)
class OutputKind:
    """One kind of output folder and the names it may hold (glob patterns): its files, and its
    subfolders with the names each may hold (None: anything, checked by the step that writes it)."""

    name: str  # "featvid stream folder": what the user is told
    files: tuple[str, ...]
    folders: dict[str, tuple[str, ...] | None] = field(default_factory=dict)

    def foreign(self, folder: Path) -> str | None:
        """The first entry of `folder` (relative name) that this kind of output never writes, or None;
        another kind's mark (run.json, ...) is named first: it says best what the folder is."""
        for mark, what in MARKS.items():
            if not _matches(mark, self.files) and os.path.lexists(folder / mark):
                return f"{mark!r} ({what})"
        for entry in sorted(folder.iterdir()):
            why = _foreign_entry(entry, self.files, self.folders)
            if why:
                return why
        return None


def _matches(name: str, patterns: Iterable[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def _foreign_entry(entry: Path, files: tuple[str, ...], folders: dict[str, tuple[str, ...] | None],
                   prefix: str = "") -> str | None:
    """`entry`'s name (and what it is) when an output of this kind would not have written it, else None."""
    name = prefix + entry.name
    st = entry.lstat()
    if stat.S_ISLNK(st.st_mode):
        return f"{name!r} (a link)"  # never followed: a clean-up through it could reach anywhere
    if stat.S_ISREG(st.st_mode):
        return None if _matches(entry.name, (*files, TEMPORARY)) else repr(name)
    if stat.S_ISDIR(st.st_mode):
        pattern = _matches(entry.name, folders)
        if pattern is None:
            return f"{name!r} (a folder)"
        inside = folders[pattern]
        if inside is None:
            return None
        return next(filter(None, (_foreign_entry(sub, inside, {}, name + "/") for sub in sorted(entry.iterdir()))),
                    None)
    return f"{name!r} ({special_kind(st.st_mode)})"


# What each command writes (docs/stream-format.md, featvid/formats/baked.py, featvid/formats/run.py).
STREAM = OutputKind("featvid stream folder", ("manifest.json", "mlp.safetensors"),
                    {"gop_[0-9]*": ("mapping.fvmap", "layout.fvgl", "*.mp4")})  # layout.fvgl: Gaussian streams
BAKED = OutputKind("featvid baked folder", ("baked.json", "mlp.safetensors", "gop_[0-9]*.fvmap", "gop_[0-9]*.planes.zst",
                                    "gop_[0-9]*.samples", "gop_[0-9]*.layout.json"))
RUN = OutputKind("featvid run folder", ("run.json", "mlp.safetensors", "colour.safetensors", "log.jsonl", "files.json",
                                "gop_[0-9]*.fvmap", "coarse_[0-9]*.safetensors"),  # the last: what older featvids wrote
                 {"frames": ("*.safetensors",), "coarse": ("*.safetensors",),
                  "segments": None})  # a segmented run's staging folders (featvid.train.segments)
SYNTH = OutputKind("featvid synth dataset", ("transforms_train.json", "transforms_test.json"),
                   {"train": ("*.png",), "test": ("*.png",), "score_masks": ("*.png",)})
GAUSSIAN_FRAMES = OutputKind("featvid Gaussian sequence", ("frame_[0-9]*.ply",))  # featvid synth-gaussians
DEMO = OutputKind("featvid demo folder", ("demo.json", "orbit.mp4"),  # each part is checked by its own step
                  {"scene": None, "run": None, "baked": None, "scene.fvv": None, "scene-web.fvv": None})


def resolved(path: PathLike) -> Path:
    """`path` absolute with every symlink followed (a link is judged by what it points to)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise OutputError(f"{path}: cannot be resolved ({e})") from e


def _stat(path: Path, shown: PathLike) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError as e:
        raise OutputError(f"{shown}: a parent of it is a file, not a folder") from e
    except OSError as e:
        raise write_failed(shown, e) from e


def _parent_is_folder(path: Path, shown: PathLike) -> None:
    """The nearest existing ancestor of the new path `path` is a folder (so the path can be made)."""
    for parent in path.parents:
        st = _stat(parent, shown)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{shown}: cannot be made, {parent} is not a folder")
        return


def check_not_input(path: PathLike, inputs: Iterable[PathLike]) -> None:
    """OutputError when the output `path` is an input, is inside one or holds one."""
    out = resolved(path)
    for given in inputs:
        inp = resolved(given)
        if out == inp:
            raise OutputError(f"{path}: is the input {given}; write the output somewhere else")
        if inp in out.parents:
            raise OutputError(f"{path}: is inside the input {given}; write the output somewhere else")
        if out in inp.parents:
            raise OutputError(f"{path}: holds the input {given}; write the output somewhere else")


def _existing(path: PathLike, inputs: Iterable[PathLike]) -> tuple[Path, os.stat_result | None]:
    """`path` resolved and its stat (None: a new path, whose parent can be made), after checking it
    is no input."""
    out = resolved(path)
    check_not_input(path, inputs)
    st = _stat(out, path)
    if st is None:
        _parent_is_folder(out, path)
    return out, st


def check_output_dir(path: PathLike, kind: OutputKind, inputs: Iterable[PathLike] = ()) -> Path:
    """Refuse `path` as an output folder of `kind` unless it is new, empty or a folder of that kind,
    and no input; returns it resolved. Touches nothing."""
    out, st = _existing(path, inputs)
    if st is None:
        return out
    if stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: is a file, not a folder; give a new or empty folder for the {kind.name}")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: is {special_kind(st.st_mode)}, not a folder; refusing to write there")
    try:
        why = kind.foreign(out)
    except OSError as e:
        raise OutputError(f"{path}: cannot be listed ({e.strerror or e})") from e
    if why:
        raise OutputError(f"{path}: the folder is not empty and holds {why}, so it is not a {kind.name}; "
                          "refusing to write into it (give a new or empty folder)")
    return out


def check_output_file(path: PathLike, inputs: Iterable[PathLike] = ()) -> Path:
    """Refuse `path` as an output file unless it is a new path or an existing regular file (in a
    folder), and no input; returns it resolved (a symlink: its target). Touches nothing."""
    out, st = _existing(path, inputs)
    if st is None:
        return out
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: is {special_kind(st.st_mode)}, not a regular file; refusing to replace it")
    return out
