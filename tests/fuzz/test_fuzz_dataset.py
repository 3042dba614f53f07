"""Fuzz a dataset's JSON (transforms_train.json / transforms_test.json) field by field: `featvid
info DATASET` keeps the contract of tests/fuzz/helpers.py, and where the loader accepts the file,
its cameras give finite rays and its images finite pixels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st

from featvid.cli import main
from featvid.data import load_dataset
from featvid.data.cameras import image_rays
from featvid.errors import FeatvidError
from tests.data.helpers import ring_cameras, write_blender
from tests.fuzz.helpers import DELETE, FUZZ, bounded, check, dump, key_paths, mutate, mutated_json


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """2 times x (3 train + 1 test) views, 24 x 32 px, with the featvid extension keys."""
    folder = tmp_path_factory.mktemp("fuzz_dataset")
    write_blender(folder, [ring_cameras(4, 24, 32)] * 2, {"train": [0, 1, 2], "test": [3]},
                  extra={"fps": 24, "background": [1, 1, 1], "aabb": [[-1, -1, -1], [1, 1, 1]]})
    return folder


def _finite_cameras_and_pixels(folder: Path) -> None:
    """The loader's output, where it accepts the folder: finite rays of every camera, finite pixels."""
    try:
        video = load_dataset(folder)
        for t in range(video.num_frames):
            cams = video.cameras_at(t)
            for v in range(len(cams)):
                o, d = image_rays(cams, v)
                assert torch.isfinite(o).all() and torch.isfinite(d).all(), (t, v)
        assert torch.isfinite(video.image(0, 0)).all()
    except FeatvidError:
        pass  # a clean refusal is the contract too (info has said it in one line)


@settings(max_examples=80, **FUZZ)
@given(data=st.data())
def test_a_mutated_transforms_json_keeps_the_contract(dataset, data):
    split = data.draw(st.sampled_from(["train", "test"]), label="split")
    target = dataset / f"transforms_{split}.json"
    with mutated_json(target, data, target.name) as what:
        with bounded():
            r = CliRunner().invoke(main, ["info", str(dataset)])
            check(r, f"{what}: featvid info")
            event(f"info exit {r.exit_code}")
            if r.exit_code == 0:
                _finite_cameras_and_pixels(dataset)


def test_every_transforms_field_swept_keeps_the_contract(dataset):
    """Each key path of transforms_train.json deleted or given a few wrong values (every field reached)."""
    target = dataset / "transforms_train.json"
    text = target.read_text()
    pristine = json.loads(text)
    try:
        for path in key_paths(pristine):
            for value in (DELETE, None, "x", 0, float("nan"), []):
                what = f"{target.name} {list(path)} -> {'<deleted>' if value is DELETE else repr(value)}"
                target.write_text(dump(mutate(pristine, path, value)))
                with bounded():
                    r = CliRunner().invoke(main, ["info", str(dataset)])
                check(r, f"{what}: featvid info")
    finally:
        target.write_text(text)
