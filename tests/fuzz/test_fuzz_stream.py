"""Fuzz a stream: its manifest field by field, and flipped bytes in a GOP's video and mapping.

Every command that reads a stream (`info`, `verify`, `render`, `eval`) keeps the contract of
tests/fuzz/helpers.py on each mutation. A flipped byte is damage the manifest's SHA-256 must catch:
there, exit 0 is itself a failure (a result computed from corrupt bytes)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st

from featvid.cli import main
from tests.fuzz.helpers import DELETE, FUZZ, bounded, check, dump, key_paths, mutate, mutated_json, flipped_bytes, assert_refused


@pytest.fixture(scope="module")
def stream(tiny_stream, tmp_path_factory) -> Path:
    """A private copy of the session's stream; each example edits it and puts it back."""
    return Path(shutil.copytree(tiny_stream, tmp_path_factory.mktemp("fuzz_stream") / "s.fvv"))


def commands(s: Path, data: Path, out: Path, full: bool, frames: int = 1) -> list[list[str]]:
    """The commands that read a stream: info and verify always, render (`frames` output frames,
    tiny) and eval when `full`."""
    cmds = [["info", str(s), "--json"], ["verify", str(s)]]
    if full:
        cmds += [["render", str(s), "--out", str(out / "o.mp4"), "--size", "8x6", "--frames", str(frames),
                  "--device", "cpu", "--hwaccel", "none"],
                 ["eval", str(s), "--data", str(data), "--device", "cpu"]]
    return cmds


def run_all(s: Path, data: Path, out: Path, what: str, full: bool = True) -> list[int]:
    """Run every command under the bound, assert the contract, return their exit codes."""
    codes = []
    for args in commands(s, data, out, full):
        with bounded():
            r = CliRunner().invoke(main, args)
        check(r, f"{what}: featvid {' '.join(args[:1])}")
        codes.append(r.exit_code)
    return codes


@settings(max_examples=80, **FUZZ)
@given(data=st.data())
def test_a_mutated_manifest_keeps_the_contract(stream, tiny_dataset, tmp_path_factory, data):
    with mutated_json(stream / "manifest.json", data, "manifest") as what:
        out = tmp_path_factory.mktemp("o")
        with bounded():
            r = CliRunner().invoke(main, ["info", str(stream), "--json"])
        check(r, f"{what}: featvid info")
        event(f"info exit {r.exit_code}")
        if r.exit_code == 0:  # the reader took it: everything that reads the stream must cope
            event(f"render, eval exit {run_all(stream, tiny_dataset, out, what)[2:]}")


def test_every_manifest_field_swept_keeps_the_contract(stream, tmp_path):
    """Each key path of the manifest, deleted or given each of a few wrong values (not random:
    every field is reached): info keeps the contract, and render too where info accepts it."""
    manifest = stream / "manifest.json"
    text = manifest.read_text()
    pristine = json.loads(text)
    wrong = [DELETE, None, "x", -1, 10**12, math.nan, []]
    try:
        for path in key_paths(pristine):
            for value in wrong:
                what = f"manifest {list(path)} -> {'<deleted>' if value is DELETE else repr(value)}"
                manifest.write_text(dump(mutate(pristine, path, value)))
                with bounded():
                    r = CliRunner().invoke(main, ["info", str(stream), "--json"])
                check(r, f"{what}: featvid info")
                if r.exit_code == 0:
                    with bounded():
                        r = CliRunner().invoke(main, commands(stream, stream, tmp_path, True)[2])
                    check(r, f"{what}: featvid render")
    finally:
        manifest.write_text(text)


def _targets(s: Path) -> list[str]:
    """The files a flip may hit: every GOP's video and mapping, and the MLP."""
    from featvid.codecs.manifest import Manifest

    return Manifest.read(s).named_files()


@settings(max_examples=12, **FUZZ)
@given(data=st.data())
def test_flipped_bytes_in_a_video_or_mapping_are_refused(stream, tiny_dataset, tmp_path_factory, data):
    """The size stays, the SHA-256 does not: verify, render and eval refuse, naming the file."""
    names = _targets(stream)
    name = data.draw(st.sampled_from([n for n in names if not n.endswith(".safetensors")] + names[:1]), label="file")
    target = stream / name
    with flipped_bytes(target, data, most=16) as what:
        out = tmp_path_factory.mktemp("o")
        frames = json.loads((stream / "manifest.json").read_text())["frames"]  # render reads every GOP
        # info checks sizes only: it may pass
        assert_refused(commands(stream, tiny_dataset, out, True, frames)[1:], what, Path(name).name)


@settings(max_examples=12, **FUZZ)
@given(data=st.data())
def test_a_cut_or_grown_file_is_refused_by_info_too(stream, data):
    names = _targets(stream)
    target = stream / data.draw(st.sampled_from(names), label="file")
    original = target.read_bytes()
    size = data.draw(st.one_of(st.integers(0, len(original) - 1), st.integers(len(original) + 1, len(original) + 64)),
                     label="size")
    try:
        target.write_bytes(original[:size] + b"\0" * max(0, size - len(original)))
        for args in (["info", str(stream)], ["verify", str(stream)]):
            with bounded():
                r = CliRunner().invoke(main, args)
            check(r, f"{target.name} cut/grown to {size} bytes: featvid {args[0]}", needles=(target.name,))
            assert r.exit_code == 2, r.output
    finally:
        target.write_bytes(original)


@settings(max_examples=10, **FUZZ)
@given(data=st.data())
def test_an_old_stream_without_hashes_decodes_garbage_cleanly(stream, tiny_dataset, tmp_path_factory, data):
    """Without a files table nothing can tell a flipped byte: the decoder, the mapping reader and
    the MLP reader must still fail cleanly or give finite output (never a traceback or NaN). It is
    read as legacy (FEATVID_LEGACY_READ=1): without that such a stream is refused outright."""
    manifest = stream / "manifest.json"
    text = manifest.read_text()
    old = json.loads(text)
    old.pop("files")
    names = _targets(stream)
    target = stream / data.draw(st.sampled_from(names), label="file")
    original = target.read_bytes()
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    n = data.draw(st.integers(1, 64), label="bytes")
    garbage = data.draw(st.binary(min_size=n, max_size=n), label="garbage")
    try:
        manifest.write_text(dump(old))
        target.write_bytes(original[:offset] + garbage + original[offset + len(garbage):])
        target.write_bytes(target.read_bytes()[:len(original)])
        out = tmp_path_factory.mktemp("o")
        for args in commands(stream, tiny_dataset, out, True)[2:]:
            with bounded(), pytest.MonkeyPatch.context() as mp:
                mp.setenv("FEATVID_LEGACY_READ", "1")
                r = CliRunner().invoke(main, args)
            check(r, f"old stream, {target.name}: {n} bytes at {offset}: featvid {args[0]}")
    finally:
        target.write_bytes(original)
        manifest.write_text(text)


@pytest.mark.parametrize("mosaic", [{"cols": 1, "rows": 1}, {"cols": 2, "rows": 3}, {"width": 128}, {"height": 200},
                                    {"cell_height": 120}, {"cell_width": 0}, {"cell_height": 144}])
def test_a_mosaic_that_cannot_hold_the_channels_is_refused(stream, mosaic):
    """7 planes of a 128 x 128 atlas need 7 cells of 128 x 128 (the stream's 3 x 3 of 384 x 384):
    a mosaic of fewer cells or pixels was read past its end (issue 15: channels vs videos); nor may
    the cells' pitch be less than the atlas, or take them past the frame (3 x 144 > 384)."""
    manifest = stream / "manifest.json"
    text = manifest.read_text()
    try:
        d = json.loads(text)
        d["gops"][0]["mosaic"].update(mosaic)
        manifest.write_text(dump(d))
        r = CliRunner().invoke(main, ["info", str(stream)])
        check(r, f"mosaic {mosaic}", needles=("manifest.json", "GOP 0", "mosaic", "7 planes"))
        assert r.exit_code == 2
    finally:
        manifest.write_text(text)
