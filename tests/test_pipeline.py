"""The jobs that chain stages (featvid.pipeline): what is kept, what is made again."""
from __future__ import annotations

import json
import shutil

from featvid.bake.atlas import BAKED_FORMAT
from featvid.codecs import DEFAULT_PRESET, encode_run
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
