"""The job file of `featvid batch` (docs/batch.md is the reference): TOML or JSON.

```toml
out = "batch-out"            # where outputs go: OUT/<sequence name>/ (relative to this file)
retries = 2                  # a failed task is tried again this many times, then reported
encode = ["h264-crf16.5"]    # the default encodes of a sequence that lists none

[[sequence]]
name = "dancer"              # default: the input folder's name
run = "runs/dancer"          # a finished run folder: baked into OUT/dancer/baked (a folder of
#                            # 3DGS PLY frames too, as `featvid bake` takes: gop, sh_degree, fps), or
# baked = "bakes/dancer"     # a baked folder, encoded as it is, or
# train = {preset = "fast", segment = 8}  # train `data` into OUT/dancer/run first (a preset name
#                            # alone, or a table: preset + TrainConfig flat names)
data = "data/dancer"         # optional: score every output on this dataset's held-out views
encode = ["h264-crf16.5", "web", {preset = "h265-crf23", crf = [20, 23, 26]}, {ladder = "abr"}]
```

A crf list makes one stream per rate; a `ladder` makes one stream holding every rendition
(adaptive streaming, featvid.codecs.encode). `load_job` reads and checks the whole file before
anything runs: unknown keys, unknown presets or ladders, rates a preset does not take and two
outputs with one folder are errors naming the place.
Paths are resolved against the job file's folder and made absolute, so that every worker of a
cluster opens the same files (they must live on a file system every worker sees).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featvid.codecs.backends import BACKENDS, DEFAULT_BACKEND
from featvid.codecs.manifest import MAX_RENDITIONS, valid_rendition_name
from featvid.codecs.presets import LADDERS, get_preset, ladder_names
from featvid.errors import ConfigError, FeatvidError, FormatError
from featvid.gaussians.ply import is_ply_folder
from featvid.limits import read_json
from featvid.names import safe_name

DEFAULT_RETRIES = 2
MAX_RETRIES = 20
# Ceilings checked before any entry is: a job file of a few lines must not spend minutes in its
# own validation (each output is checked, named and compared with the others).
MAX_SEQUENCES = 1000  # [[sequence]] entries
MAX_ENCODES = 256  # entries of one encode list
MAX_CRF_LIST = 64  # rates of one crf list
MAX_OUTPUTS = 4096  # streams of the whole job (a crf list makes one per rate)

_JOB_KEYS = {"out", "retries", "backend", "encode", "sequence"}
_SEQUENCE_KEYS = {"name", "run", "baked", "data", "encode", "train", "gop", "sh_degree", "fps"}
_PLY_KEYS = ("gop", "sh_degree", "fps")  # `featvid bake`'s options of a folder of Gaussian PLY frames
_ENCODE_KEYS = {"preset", "crf", "basis", "name", "ladder", "plane_qp", "space_qp"}


@dataclass(frozen=True)
class EncodeSpec:
    """One stream to make of a sequence: a preset with an optional rate override, or a ladder of
    presets (one stream of several renditions); the feature basis."""

    preset: str | None  # a name from featvid.codecs.presets.PRESETS; None for a ladder
    crf: float | None = None  # overrides the preset's rate (crf, or qp for NVENC)
    basis: bool | None = None  # None: the presets' choice
    name: str = ""  # the stream folder's name without ".fvv"
    ladder: tuple[str, ...] | None = None  # the renditions' preset names, in order, or None
    plane_qp: tuple[float, ...] | None = None  # the preset's QP offsets per atlas plane overridden (None: its own)
    space_qp: tuple[float, ...] | None = None  # its (inner box, shell) offsets overridden (None: its own)

    @property
    def presets(self) -> tuple[str, ...]:
        """The preset of every rendition (one without a ladder)."""
        return self.ladder if self.ladder is not None else (str(self.preset),)

    def wanted(self) -> list[Any]:
        """What `Manifest.differs` compares a finished stream with: the preset names, or the one
        preset with its offsets overridden (a Preset)."""
        if self.plane_qp is None and self.space_qp is None:
            return list(self.presets)
        return [get_preset(str(self.preset)).with_offsets(self.plane_qp, self.space_qp)]


@dataclass(frozen=True)
class TrainSpec:
    """A sequence trained by the job: a training preset and its overrides (TrainConfig flat names)."""

    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def config(self):
        """The TrainConfig (featvid.train.config.preset_and_derived: ConfigError when it is not one)."""
        from featvid.train.config import preset_and_derived

        return preset_and_derived(self.preset, **dict(self.overrides))[0]


@dataclass(frozen=True)
class Sequence:
    """One captured sequence and what to make of it."""

    name: str
    folder: Path  # OUT/<name>: the bake (when made here), the streams and their scores
    run: Path | None  # a finished run folder to bake first, or None
    baked: Path  # the bake the streams are encoded from (folder/baked when made from `run`)
    data: Path | None  # the dataset to score outputs on, or None
    encodes: tuple[EncodeSpec, ...]
    train: TrainSpec | None = None  # train `data` into `run` first, or None (`run` is finished)
    ply: Path | None = None  # a folder of 3DGS PLY frames baked into `baked` first (then run is None)
    ply_options: tuple[tuple[str, Any], ...] = ()  # bake_gaussians' gop / sh_degree / fps, as given

    def stream_dir(self, spec: EncodeSpec) -> Path:
        return self.folder / f"{spec.name}.fvv"


@dataclass(frozen=True)
class Job:
    """A whole job file, checked: its sequences, the back end and the retry bound."""

    path: Path
    out: Path
    sequences: tuple[Sequence, ...]
    backend: str = DEFAULT_BACKEND
    retries: int = DEFAULT_RETRIES


class JobFailed(FeatvidError):
    """A batch job ran, but some of its tasks failed after their retries (the rest is complete)."""


def load_job(path: str | Path) -> Job:
    """Read and check a job file (.toml or .json); ConfigError naming the problem otherwise."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: no such job file")
    try:
        if path.suffix.lower() == ".json":
            data = read_json(path, str(path))  # bounded: a size ceiling, deep nesting refused
        elif path.suffix.lower() == ".toml":
            data = toml_reader().loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"{path}: a job file is .toml or .json")
    except (ValueError, UnicodeDecodeError, FormatError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: not a readable job file ({str(e).removeprefix(f'{path}: ')})") from e
    return job_from_dict(data, path)


def toml_reader():
    """The standard library's TOML reader (Python 3.11+), or its backport `tomli` on 3.10."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def job_from_dict(data: Any, path: Path) -> Job:
    """Check a parsed job file; `path` names it in errors and anchors its relative paths."""
    src = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: a job file is a table (TOML) or an object (JSON)")
    _known(data, _JOB_KEYS, src)
    root = path.parent
    out = _path(data.get("out", f"{path.stem}-out"), "out", src, root)
    retries = data.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ConfigError(f"{src}: retries must be an integer in 0..{MAX_RETRIES}, got {retries!r}")
    backend = data.get("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise ConfigError(f"{src}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    default_encodes = data.get("encode", [])
    entries = data.get("sequence")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{src}: no sequences: add [[sequence]] tables (TOML) or a \"sequence\" list (JSON)")
    _check_sizes(entries, default_encodes, src)
    sequences = [_sequence(e, i, default_encodes, out, root, src) for i, e in enumerate(entries)]
    names = [s.name for s in sequences]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{src}: two sequences are named {twice[0]!r}: give each its own `name`")
    return Job(path, out, tuple(sequences), backend, retries)


def _check_sizes(entries: list, default_encodes: Any, src: str) -> None:
    """Every list within its ceiling and the job's outputs within MAX_OUTPUTS, counted before any
    entry is checked (a crf list of 100,000 rates is refused here, at once)."""
    if len(entries) > MAX_SEQUENCES:
        raise ConfigError(f"{src}: {len(entries)} sequences; a job file holds at most {MAX_SEQUENCES}")
    total = 0
    for i, e in enumerate(entries):
        raw = e.get("encode", default_encodes) if isinstance(e, dict) else []
        if not isinstance(raw, list):
            continue  # the entry's own check names it
        if len(raw) > MAX_ENCODES:
            raise ConfigError(f"{src}: sequence {i + 1}: {len(raw)} encodes; an encode list holds at most "
                              f"{MAX_ENCODES}")
        for j, item in enumerate(raw):
            crf = item.get("crf") if isinstance(item, dict) else None
            if isinstance(crf, list) and len(crf) > MAX_CRF_LIST:
                raise ConfigError(f"{src}: sequence {i + 1}, encode {j + 1}: {len(crf)} rates; a crf list "
                                  f"holds at most {MAX_CRF_LIST}")
            total += len(crf) if isinstance(crf, list) else 1
        if total > MAX_OUTPUTS:
            raise ConfigError(f"{src}: more than {MAX_OUTPUTS} outputs in one job; split it into several job files")


def _known(d: dict, keys: set[str], where: str) -> None:
    unknown = sorted(set(d) - keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _path(value: Any, key: str, where: str, root: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a path, got {str(value)[:60]!r}")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else root / p).resolve()


def _sequence(e: Any, i: int, default_encodes: Any, out: Path, root: Path, src: str) -> Sequence:
    where = f"{src}: sequence {i + 1}"
    if not isinstance(e, dict):
        raise ConfigError(f"{where}: must be a table with run or baked")
    _known(e, _SEQUENCE_KEYS, where)
    if sum(k in e for k in ("run", "baked", "train")) != 1:
        raise ConfigError(f"{where}: give either run (a run folder to bake), baked (a baked folder) or train "
                          "(a preset to train data with)")
    train = _train(e["train"], where) if "train" in e else None
    if train is not None and "data" not in e:
        raise ConfigError(f"{where}: train needs data (the dataset to train)")
    run = _path(e["run"], "run", where, root) if "run" in e else None
    try:
        ply = run if run is not None and is_ply_folder(run) else None  # baked as `featvid bake` does
    except OSError as err:  # an unlistable folder
        raise ConfigError(f"{where}: run {str(run)!r} cannot be listed ({err.strerror or err})") from None
    given = run if run is not None else _path(e["data" if train is not None else "baked"], "data", where, root)
    name = e.get("name", given.name)
    try:
        safe_name(name, "name", where)
    except FeatvidError as err:
        raise ConfigError(str(err)) from None
    if "/" in name:
        raise ConfigError(f"{where}: name {name!r} must be a plain folder name")
    where = f"{src}: sequence {name!r}"
    folder = out / name
    if train is not None:
        run = folder / "run"
    ply_options = _ply_options(e, ply is not None, where)
    if ply is not None:
        run = None
    baked = folder / "baked" if run is not None or ply is not None else given
    data = _path(e["data"], "data", where, root) if "data" in e else None
    raw = e.get("encode", default_encodes)
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: encode must be a list of preset names or tables")
    encodes = [spec for j, item in enumerate(raw) for spec in _encodes(item, f"{where}, encode {j + 1}")]
    if run is None and ply is None and not encodes:
        raise ConfigError(f"{where}: a baked sequence needs at least one encode")
    names = [s.name for s in encodes]
    if "baked" in names and (run is not None or ply is not None):
        raise ConfigError(f"{where}: a stream may not be named 'baked' (the bake's folder)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: two encodes write {twice[0]}.fvv: give one a `name`")
    return Sequence(name, folder, run, baked, data, tuple(encodes), train, ply, ply_options)


def _ply_options(e: dict, ply: bool, where: str) -> tuple[tuple[str, Any], ...]:
    """A PLY sequence's bake options (featvid.bake.gaussians.bake_gaussians' gop, sh_degree, fps),
    checked; an error when given for anything but a folder of PLY frames."""
    given = [k for k in _PLY_KEYS if k in e]
    if given and not ply:
        raise ConfigError(f"{where}: {given[0]} applies to a folder of Gaussian PLY frames (run = \"FOLDER\")")
    bounds = {"gop": (1, 10000), "sh_degree": (0, 3), "fps": (0.001, 1000)}
    for k in given:
        v, (lo, hi) = e[k], bounds[k]
        if isinstance(v, bool) or not isinstance(v, (int, float) if k == "fps" else int) or not lo <= v <= hi:
            raise ConfigError(f"{where}: {k} must be {'a number' if k == 'fps' else 'an integer'} in {lo}..{hi}, "
                              f"got {v!r}")
    return tuple((k, float(e[k]) if k == "fps" else e[k]) for k in given)


def _train(item: Any, where: str) -> TrainSpec:
    """A sequence's `train`: a preset name, or a table of a preset and TrainConfig flat names."""
    if isinstance(item, str):
        item = {"preset": item}
    if not isinstance(item, dict) or not isinstance(item.get("preset", "fast"), str):
        raise ConfigError(f"{where}: train must be a training preset name or a table with preset")
    spec = TrainSpec(item.get("preset", "fast"), tuple(sorted((k, v) for k, v in item.items() if k != "preset")))
    try:
        spec.config()  # unknown preset or field, a value out of range
    except ConfigError as e:
        raise ConfigError(f"{where}: train: {e}") from None
    return spec


def _encodes(item: Any, where: str) -> list[EncodeSpec]:
    """One entry of an encode list: a preset name, or a table (a crf list is one stream per rate,
    a ladder one stream of several renditions)."""
    if isinstance(item, str):
        item = {"preset": item}
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a preset name or a table with preset or ladder")
    _known(item, _ENCODE_KEYS, where)
    basis = item.get("basis")
    if basis is not None and not isinstance(basis, bool):
        raise ConfigError(f"{where}: basis must be true or false")
    if "ladder" in item:
        if "plane_qp" in item or "space_qp" in item:
            raise ConfigError(f"{where}: a ladder takes its presets' QP offsets; give plane_qp / space_qp to an "
                              "encode of one preset")
        return [_ladder(item, basis, where)]
    preset = item.get("preset")
    if not isinstance(preset, str):
        raise ConfigError(f"{where}: preset must be a preset name (see `featvid presets`)")
    get_preset(preset)  # ConfigError listing the known ones
    plane_qp, space_qp = _offsets(item, "plane_qp", None, where), _offsets(item, "space_qp", 2, where)
    if plane_qp is not None or space_qp is not None:
        try:
            get_preset(preset).with_offsets(plane_qp, space_qp)  # the encoder reads offsets; each in range
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    crf = item.get("crf")
    rates = crf if isinstance(crf, list) else [crf]
    if not rates:
        raise ConfigError(f"{where}: crf is an empty list")
    if "name" in item and len(rates) > 1:
        raise ConfigError(f"{where}: a crf list names its streams itself (PRESET-crfN); drop `name`")
    specs = []
    for rate in rates:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
            raise ConfigError(f"{where}: crf must be a number or a list of numbers, got {rate!r}")
        rate = None if rate is None else float(rate)
        name = item.get("name") or preset + ("" if rate is None else f"-crf{rate:g}") + \
            ("" if basis is None else ("-basis" if basis else "-no-basis"))
        _check_name(name, where)
        try:
            get_preset(preset).encoder_options(rate)  # the rate fits (range, whole numbers where the encoder wants them)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        specs.append(EncodeSpec(preset, rate, basis, name, plane_qp=plane_qp, space_qp=space_qp))
    return specs


def _offsets(item: dict, key: str, count: int | None, where: str) -> tuple[float, ...] | None:
    """An encode's `plane_qp` (offsets of the atlas planes, density first) or `space_qp` (`count`
    = 2: inner box, shell), as `featvid encode --plane-qp / --space-qp` takes them: a list of
    numbers, or "none" (no offsets); None when not given (the preset's own)."""
    if key not in item:
        return None
    v = item[key]
    if v == "none":
        return () if count is None else (0.0,) * count
    ok = isinstance(v, list) and bool(v) and all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in v)
    if not ok or (count is not None and len(v) != count):
        want = "a list of numbers (density's offset first)" if count is None else "a list of two numbers [INNER, SHELL]"
        raise ConfigError(f"{where}: {key} must be {want}, or \"none\"; got {v!r}")
    return tuple(float(q) for q in v)


def _ladder(item: dict, basis: bool | None, where: str) -> EncodeSpec:
    """A ladder entry: a name from LADDERS, "PRESET,PRESET,..." or a list of preset names; the
    stream is named after a named ladder (else "ladder"), unless `name` says otherwise."""
    if "preset" in item or "crf" in item:
        raise ConfigError(f"{where}: a ladder names every rendition's preset: it takes no preset or crf")
    raw = item["ladder"]
    try:
        if isinstance(raw, str):
            presets = ladder_names(raw)
        elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            presets = tuple(raw)
            twice = sorted({p for p in presets if presets.count(p) > 1})
            if twice:
                raise ConfigError(f"the ladder names {', '.join(twice)} twice: two renditions cannot share a name")
        else:
            raise ConfigError(f"a ladder is a name ({', '.join(LADDERS)}) or a list of preset names, got {raw!r}")
        for p in presets:
            get_preset(p)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if len(presets) > MAX_RENDITIONS:
        raise ConfigError(f"{where}: a ladder holds at most {MAX_RENDITIONS} renditions, this one {len(presets)}")
    bad = next((p for p in presets if not valid_rendition_name(p)), None)
    if bad is not None:
        raise ConfigError(f"{where}: preset {bad!r} cannot name a rendition (1-64 letters, digits, '.', '_', '-')")
    default = raw.strip() if isinstance(raw, str) and raw.strip() in LADDERS else "ladder"
    name = item.get("name") or default + ("" if basis is None else ("-basis" if basis else "-no-basis"))
    _check_name(name, where)
    return EncodeSpec(None, None, basis, name, presets)


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or "/" in name or name.startswith(".") or not name:
        raise ConfigError(f"{where}: name must be a plain folder name, got {name!r}")
