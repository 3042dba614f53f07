"""The scene box: the space the cameras see, tightened by masks (visual hull) or a coarse density
pass; a box given with --aabb is checked, and one that misses the subject is reported."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from featvid.train.scene_box import resolve_box
from featvid.cli import main
from featvid.data import load_dataset
from featvid.data.scene_box import candidate_region, seen_box
from featvid.errors import DatasetError
from tests.data.helpers import SPHERE_CENTRE, SPHERE_RADIUS, ring_cameras
from tests.data.test_nhr import write_rerf

SPHERE = torch.stack([SPHERE_CENTRE - SPHERE_RADIUS, SPHERE_CENTRE + SPHERE_RADIUS])  # [2, 3]


def _holds(box: torch.Tensor, inner: torch.Tensor, tol: float = 0.0) -> bool:
    return bool(((box[0] <= inner[0] + tol) & (box[1] >= inner[1] - tol)).all())


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """5 ring cameras around a sphere, ReRF layout with mask videos."""
    folder = tmp_path_factory.mktemp("box")
    write_rerf(folder)
    return folder


def test_seen_space_of_a_ring_rig_is_bounded_and_holds_the_centre():
    cams = ring_cameras(8, 24, 32)
    box = seen_box(cams)
    region = candidate_region(cams, None)
    assert box.source == "cameras" and "8 of the 8 cameras" in box.reason
    assert _holds(box.aabb, torch.zeros(2, 3))
    # far smaller than the cube out to the cameras: the frusta of a ring overlap only in the middle
    assert (box.aabb[1] - box.aabb[0]).prod() < 0.1 * (region[1] - region[0]).prod()


def test_masks_tighten_the_box_to_the_subject(capture):
    video = load_dataset(capture)
    seen = seen_box(video.cameras_at(0))
    box = video.box
    assert box.source == "masks" and "visual hull" in box.reason and "padded 10%" in box.reason
    assert _holds(box.aabb, SPHERE)
    # measured: the hull box is 1.2-1.4x the sphere's size per axis (5 cameras at one height), the seen space 3.5x
    assert ((box.aabb[1] - box.aabb[0]) < 1.8 * (SPHERE[1] - SPHERE[0])).all()
    assert (box.aabb[1] - box.aabb[0]).prod() < 0.25 * (seen.aabb[1] - seen.aabb[0]).prod()


def test_density_pass_tightens_the_box_without_masks(tmp_path):
    write_rerf(tmp_path, masks=False, background=255)  # the subject on the dataset's white background
    video, report = resolve_box(load_dataset(tmp_path), device="cpu")
    box = video.box
    assert box.source == "density" and "coarse density pass over frames 0, 1, 2" in box.reason
    assert not report.warnings
    assert _holds(box.aabb, SPHERE, tol=0.05)
    seen = video.auto_box()
    assert seen.source == "cameras"
    assert (box.aabb[1] - box.aabb[0]).prod() < 0.5 * (seen.aabb[1] - seen.aabb[0]).prod()


def test_a_given_box_is_checked_against_the_subject(capture):
    inside = load_dataset(capture, aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    _, report = resolve_box(inside)
    assert report.warnings == [] and report.outside < 0.01
    half = SPHERE.clone()
    half[1, 0] = SPHERE_CENTRE[0]  # cuts the sphere in half along x
    _, report = resolve_box(load_dataset(capture, aabb=half))
    assert 0.3 < report.outside < 0.7 and "leaves out" in report.warnings[0]
    with pytest.raises(DatasetError, match="misses the subject"):
        resolve_box(load_dataset(capture, aabb=torch.tensor([[5.0, 5, 5], [6, 6, 6]])))


def test_info_prints_the_box_and_why_and_reports_a_bad_one(capture):
    result = CliRunner().invoke(main, ["info", str(capture)])
    assert result.exit_code == 0, result.output
    assert "aabb_source: masks" in result.output and "aabb_reason: visual hull" in result.output
    result = CliRunner().invoke(main, ["info", str(capture), "--aabb", "-0.1,-0.6,-0.15,0.3,0.2,0.65"])
    assert result.exit_code == 0 and "featvid: warning: the scene box" in result.output
    assert "aabb_source: option" in result.output and "aabb_subject_outside" in result.output
    result = CliRunner().invoke(main, ["info", str(capture), "--aabb", "5,5,5,6,6,6"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and str(capture) in lines[0] and "misses the subject" in lines[0]
    result = CliRunner().invoke(main, ["info", str(capture), "--aabb", "1,2,3"])
    assert result.exit_code == 2 and "--aabb" in result.output


def test_train_takes_the_box_and_keeps_a_resumed_runs_own(capture, tmp_path, monkeypatch):
    """--aabb reaches the trainer (which writes video.aabb into run.json); resuming keeps run.json's box."""
    import json

    import featvid.train.train as trainer

    seen = {}

    def fake_train(dataset, out, config, frames=None, device="auto", force=False, video=None, **kw):
        seen["aabb"], seen["size"] = video.aabb.clone(), (video.height, video.width)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"aabb": video.aabb.tolist()}))

        class _Run:  # what the train summary (featvid.train.summary.TrainSummary) reads of a Run
            path = out
            num_frames = 1
            gops = [[0]]

            def log(self):
                return []
        return _Run()

    import featvid.pipeline as pipeline

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(pipeline, "train", fake_train)  # the name featvid.pipeline.train_dataset calls
    out = tmp_path / "run"
    box = "-0.6,-0.7,-0.6,1.0,0.5,1.0"
    result = CliRunner().invoke(main, ["train", str(capture), "--out", str(out), "--preset", "test", "--aabb", box,
                                       "--downscale", "2", "--format", "nhr"])
    assert result.exit_code == 0, result.output
    assert "given with --aabb" in result.output
    assert seen["aabb"].flatten().tolist() == pytest.approx([float(x) for x in box.split(",")])
    assert seen["size"] == (12, 16)  # --downscale 2 of 24x32
    # resuming: the run's own box, without estimating one; another --aabb is refused
    monkeypatch.setattr("featvid.formats.run.Run.aabb", property(lambda self: torch.tensor(json.loads(
        (self.path / "run.json").read_text())["aabb"])), raising=False)
    monkeypatch.setattr("featvid.formats.run.Run.__init__",
                        lambda self, path: (setattr(self, "path", path), setattr(self, "meta", {}))[0])
    result = CliRunner().invoke(main, ["train", str(capture), "--out", str(out), "--preset", "test"])
    assert result.exit_code == 0, result.output
    assert "run.json was started with (resuming)" in result.output
    result = CliRunner().invoke(main, ["train", str(capture), "--out", str(out), "--aabb", "0,0,0,1,1,1"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "holds a run trained in the scene box" in lines[0]


def test_train_with_a_given_box_end_to_end(capture, tmp_path):
    """The real trainer on the ReRF capture: the box given with --aabb is the run's."""
    import json
    import re

    out = tmp_path / "run"
    box = [-0.8, -0.8, -0.6, 0.8, 0.8, 1.0]
    result = CliRunner().invoke(main, ["train", str(capture), "--out", str(out), "--preset", "test", "--frames", "0:1",
                                       "--device", "cpu", "--aabb", ",".join(str(x) for x in box)])
    assert result.exit_code == 0, result.output
    assert "given with --aabb" in result.output and "held-out" in result.output
    assert torch.tensor(json.loads((out / "run.json").read_text())["aabb"]).flatten().tolist() == pytest.approx(box)
    psnr = float(re.search(r"last frame: ([\d.]+) dB held-out", result.output).group(1))
    assert psnr > 21.0, psnr  # measured 22.88 dB (frame 0, --preset test)
