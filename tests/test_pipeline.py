"""The jobs that chain stages (featvid.pipeline): what is kept, what is made again."""
from __future__ import annotations

import json
import shutil

from featvid.formats.baked import BAKED_FORMAT
from featvid.pipeline import encode_run
from featvid.codecs import DEFAULT_PRESET
from featvid.pipeline import describe, ensure_bake, kind_of, stream_is_current
from tests.codecs.synthetic import make_run


def test_a_stream_is_current_only_for_its_preset_as_it_is_now(tmp_path):
    """`featvid demo` keeps a stream only when its preset, options and basis are the preset's now."""
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    s = encode_run(run, tmp_path / "s.fvv")
    assert stream_is_current(s, DEFAULT_PRESET)
    assert not stream_is_current(s, "h264-crf28") and not stream_is_current(s, "nope")
    assert not stream_is_current(tmp_path / "missing.fvv", DEFAULT_PRESET)
    manifest = json.loads((s / "manifest.json").read_text())

    def variant(name: str, m: dict):
        d = shutil.copytree(s, tmp_path / name)
        (d / "manifest.json").write_text(json.dumps(m))
        return d

    old = variant("old.fvv", {**manifest, "mlp": {k: v for k, v in manifest["mlp"].items() if k != "feature_basis"}})
    assert not stream_is_current(old, DEFAULT_PRESET)  # made before the feature basis
    older = variant("older.fvv", {**manifest, "codec": {**manifest["codec"], "options": {"preset": "medium", "crf": "20"}}})
    assert not stream_is_current(older, DEFAULT_PRESET)
    (tmp_path / "junk.fvv").mkdir()
    (tmp_path / "junk.fvv" / "manifest.json").write_text("{not json")
    assert not stream_is_current(tmp_path / "junk.fvv", DEFAULT_PRESET)


def test_a_bake_of_an_older_format_is_baked_again(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=1, shape=(16, 16, 16), channels=2)
    baked, now = ensure_bake(run, tmp_path / "baked")
    assert now and kind_of(baked) == "baked" and describe(baked)["gops"] == 2
    assert ensure_bake(run, baked) == (baked, False)  # current: kept
    meta = json.loads((baked / "baked.json").read_text())
    (baked / "baked.json").write_text(json.dumps({**meta, "version": 1}))  # what featvid 0.1 wrote
    _, now = ensure_bake(run, baked)
    assert now and json.loads((baked / "baked.json").read_text())["format"] == BAKED_FORMAT
    assert ensure_bake(run, baked, fresh=True)[1]  # the run changed: baked again


def test_a_bake_of_another_run_in_the_same_folder_is_baked_again(tmp_path):
    # a run trained again into its folder (another preset) with the bake left from before: the
    # old bake is not this run's, whatever an earlier interrupted command knew
    run = make_run(tmp_path / "run", frames=2, gop=1, shape=(16, 16, 16), channels=2, seed=0)
    baked, _ = ensure_bake(run, tmp_path / "baked")
    shutil.rmtree(run)
    shutil.copytree(make_run(tmp_path / "other", frames=2, gop=1, shape=(16, 16, 16), channels=2, seed=1), run)
    assert ensure_bake(run, baked) == (baked, True)
    assert ensure_bake(run, baked) == (baked, False)  # now it is


def test_default_stream_stays_close_to_its_run(tiny_run, tiny_stream, tiny_dataset):
    """The whole codec on the tiny scene: held-out PSNR of the default-preset stream within a stated
    bound of the float run's. Measured: run 28.02 dB, stream 27.61 dB (-0.40); per frame -0.30 to -0.55."""
    from featvid.pipeline import evaluate_source

    run = evaluate_source(tiny_run, tiny_dataset, device="cpu")
    stream = evaluate_source(tiny_stream, tiny_dataset, device="cpu")
    assert run.mean_psnr - stream.mean_psnr < 0.6, (run.table(), stream.table())
    for a, b in zip(run.per_frame, stream.per_frame, strict=True):
        assert a.frame == b.frame and a.psnr - b.psnr < 0.75, (a, b)


def test_decode_only_decodes_every_frame(tiny_stream):
    """`featvid play --decode-only`: every frame of every GOP decoded (and repeated for --duration)."""
    from click.testing import CliRunner

    from featvid.cli import main
    from featvid.codecs import open_stream
    from featvid.render.decode_bench import decode_only

    n = open_stream(tiny_stream).num_frames
    stats = decode_only(tiny_stream, "cpu", "none", min_seconds=0.2)
    assert stats.frames == n * stats.passes and stats.passes >= 2 and stats.ms_per_frame > 0
    r = CliRunner().invoke(main, ["play", str(tiny_stream), "--decode-only", "--device", "cpu"])
    assert r.exit_code == 0 and f"decoded {n} frames" in r.output and "ms/frame" in r.output, r.output
    r = CliRunner().invoke(main, ["play", str(tiny_stream), "--decode-only", "--out", "x.mp4"])
    assert r.exit_code == 2 and "renders nothing" in r.output
