"""Fuzz a run folder: run.json field by field, and a frame file's safetensors header and values.

`info`, `bake` and `eval` keep the contract of tests/fuzz/helpers.py on each mutation."""
from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st

from featvid.cli import main
from tests.fuzz.helpers import DELETE, EDGE_NUMBERS, FUZZ, bounded, check, dump, key_paths, mutate, replacements, mutated_json, flipped_bytes, assert_refused


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Iterator[Path]:
    """A private copy of the session's run without its file records (as an older featvid wrote
    it), so that an edited frame reaches the frame reader's own checks instead of the hash's;
    each example edits it and puts it back. Read as legacy (FEATVID_LEGACY_READ=1 for this module:
    a run without records is refused otherwise; one with records reads the same either way)."""
    path = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("fuzz_run") / "run"))
    (path / "files.json").unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATVID_LEGACY_READ", "1")
        yield path


@pytest.fixture(scope="module")
def recorded_run(tiny_run, tmp_path_factory) -> Path:
    """A private copy of the session's run as written, file records included."""
    return Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("fuzz_run") / "recorded"))


def run_commands(run: Path, data: Path, out: Path, what: str) -> list[int]:
    """info, then bake and eval when info accepts the run; the contract on each; their exit codes."""
    codes = []
    for args in (["info", str(run)], ["bake", str(run), "--out", str(out / "baked")],
                 ["eval", str(run), "--data", str(data), "--device", "cpu"]):
        with bounded():
            r = CliRunner().invoke(main, args)
        check(r, f"{what}: featvid {args[0]}")
        codes.append(r.exit_code)
        if r.exit_code != 0:
            break
    return codes


# Found by this suite: the run reader did not check frame_start, and `eval` called int() on it
# (a list -> TypeError, a traceback).
def test_a_run_with_a_frame_start_of_the_wrong_type_is_one_line(run, tiny_dataset, tmp_path):
    meta = run / "run.json"
    text = meta.read_text()
    try:
        meta.write_text(dump(mutate(json.loads(text), ("frame_start",), [[]])))
        with bounded():
            r = CliRunner().invoke(main, ["eval", str(run), "--data", str(tiny_dataset), "--device", "cpu"])
        check(r, "run.json frame_start -> [[]]: featvid eval", needles=("run.json", "frame_start"))
    finally:
        meta.write_text(text)


@settings(max_examples=20, **FUZZ)
@given(data=st.data())
def test_a_mutated_run_json_keeps_the_contract(run, tiny_dataset, tmp_path_factory, data):
    with mutated_json(run / "run.json", data, "run.json") as what:
        event(f"exit codes {run_commands(run, tiny_dataset, tmp_path_factory.mktemp('o'), what)}")


def read_safetensors(raw: bytes) -> tuple[dict, bytes]:
    """(header, data) of a safetensors file: 8-byte little-endian header length, JSON header, data."""
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(header: dict, body: bytes) -> bytes:
    text = dump(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def _frame_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "frames").glob("*.safetensors"))


@settings(max_examples=30, **FUZZ)
@given(data=st.data())
def test_a_mutated_frame_header_keeps_the_contract(run, tiny_dataset, tmp_path_factory, data):
    """Any header field (dtype, shape, data_offsets, metadata) replaced or deleted."""
    target = run / "frames" / data.draw(st.sampled_from(_frame_files(run)), label="frame")
    original = target.read_bytes()
    header, body = read_safetensors(original)
    path = data.draw(st.sampled_from(key_paths(header)), label="path")
    value = data.draw(replacements, label="value")
    what = f"{target.name} header {list(path)} -> {'<deleted>' if value is DELETE else repr(value)[:80]}"
    try:
        target.write_bytes(write_safetensors(mutate(header, path, value), body))
        event(f"exit codes {run_commands(run, tiny_dataset, tmp_path_factory.mktemp('o'), what)}")
    finally:
        target.write_bytes(original)


_DTYPES = {"F32": ("<f4", 4), "I32": ("<i4", 4), "F16": ("<f2", 2), "I64": ("<i8", 8), "U8": ("<u1", 1)}


@settings(max_examples=20, **FUZZ)
@given(data=st.data())
def test_a_frame_with_edited_values_keeps_the_contract(run, tiny_dataset, tmp_path_factory, data):
    """One tensor's values set to NaN, inf, huge, negative or out-of-grid numbers, or a coordinate
    repeated: info, bake and eval take the frame (finite output) or refuse it with one line."""
    import numpy as np

    target = run / "frames" / data.draw(st.sampled_from(_frame_files(run)), label="frame")
    original = target.read_bytes()
    header, body = read_safetensors(original)
    name = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")), label="tensor")
    info = header[name]
    dtype, size = _DTYPES[info["dtype"]]
    lo, hi = info["data_offsets"]
    values = np.frombuffer(body[lo:hi], dtype=dtype).copy()
    kind = data.draw(st.sampled_from(["value", "repeat"]), label="kind")
    if kind == "repeat" and name == "coords" and len(values) >= 6:
        values[3:6] = values[0:3]  # voxel 1 at voxel 0's coordinates
    else:
        i = data.draw(st.integers(0, len(values) - 1), label="index")
        v = data.draw(st.sampled_from([x for x in EDGE_NUMBERS if not isinstance(x, bool)]), label="value")
        if np.issubdtype(values.dtype, np.integer):
            v = int(max(min(v, np.iinfo(values.dtype).max), np.iinfo(values.dtype).min)) \
                if math.isfinite(v) else np.iinfo(values.dtype).max
        values[i] = v
    what = f"{target.name}: {name} {kind} -> {values[:6].tolist()}"
    try:
        target.write_bytes(write_safetensors(header, body[:lo] + values.tobytes() + body[hi:]))
        event(f"exit codes {run_commands(run, tiny_dataset, tmp_path_factory.mktemp('o'), what)}")
    finally:
        target.write_bytes(original)


@settings(max_examples=10, **FUZZ)
@given(data=st.data())
def test_flipped_bytes_in_a_recorded_run_file_are_refused(recorded_run, tiny_dataset, tmp_path_factory, data):
    """A frame, a GOP's mapping or the MLP with flipped bytes: bake and eval refuse it, naming the file."""
    if not (recorded_run / "files.json").is_file():
        pytest.skip("this run records no file hashes")
    names = sorted(str(p.relative_to(recorded_run)) for p in recorded_run.rglob("*")
                   if p.is_file() and p.suffix in (".safetensors", ".fvmap") and p.parent.name != "coarse")
    name = data.draw(st.sampled_from(names), label="file")
    target = recorded_run / name
    with flipped_bytes(target, data) as what:
        out = tmp_path_factory.mktemp("o")
        commands = [["bake", str(recorded_run), "--out", str(out / "baked")]]
        if not name.endswith(".fvmap"):  # eval renders the frames with the MLP: it reads no mapping
            commands.append(["eval", str(recorded_run), "--data", str(tiny_dataset), "--device", "cpu"])
        assert_refused(commands, f"run {what}", Path(name).name)
