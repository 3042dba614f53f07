"""The baker: sparse gather == the dense gather, bake -> unbake lossless, resume, refusals."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from featvid.bake.atlas import bake_run
from featvid.formats.baked import Baked
from featvid.formats.run import Run
from featvid.errors import FormatError
from featvid.field.mapping import Mapping
from tests.codecs.synthetic import make_grid, make_run


def test_sparse_gather_equals_dense_gather():
    grids = [make_grid((20, 18, 22), 3, t) for t in range(2)]
    mapping = Mapping.from_union([g.occupancy() for g in grids])
    for g in grids:
        assert torch.equal(mapping.grid_to_atlas(g), mapping.to_atlas(g.to_dense()))


def test_grid_outside_the_mapping_is_refused():
    mapping = Mapping.from_occupancy(make_grid((16, 16, 16), 2, 0).occupancy())
    far = make_grid((16, 16, 16), 2, 0)
    far.coords = torch.tensor([[15, 15, 15]], dtype=torch.int32)
    far.density, far.features = torch.ones(1), torch.ones(1, 2)
    with pytest.raises(FormatError, match="outside the GOP's mapping"):
        mapping.grid_to_atlas(far)


def test_bake_unbake_is_lossless(tmp_path):
    run = Run(make_run(tmp_path / "run", frames=3, gop=2, shape=(20, 20, 20), channels=3))
    baked = Baked(bake_run(run.path, tmp_path / "baked"))
    meta = baked.meta
    assert (meta["frames"], meta["channels"], meta["grid_shape"]) == (3, 4, [20, 20, 20])
    assert [g.frames for g in baked.gops] == [2, 1]
    for g, entry in enumerate(baked.gops):
        mapping = baked.mapping(g)
        atlas = baked.atlas(g)
        for f in range(entry.frames):
            ref = run.frame(entry.start + f)
            back = mapping.atlas_to_grid(atlas.planes[f], run.aabb)  # every vertex of the GOP's blocks
            dense, ref_dense = back.to_dense(), ref.to_dense()
            assert torch.equal(dense, ref_dense)  # stored values exact, the rest 0 on both sides
            assert ref.occupancy()[back.occupancy()].sum() == ref.coords.shape[0]
        lo = atlas.planes.amin(dim=(0, 2, 3))
        assert all(r[0] >= float(l) - 1e-6 for r, l in zip(atlas.ranges, lo))
    assert json.loads((tmp_path / "baked" / "baked.json").read_text())["format"] == "featvid-baked"
    assert (baked.path / "mlp.safetensors").read_bytes() == (run.path / "mlp.safetensors").read_bytes()
    for k, v in baked.mlp().state_dict().items():
        assert torch.equal(v, run.mlp().state_dict()[k])


def test_bake_resumes_and_is_repeatable(tmp_path):
    run = make_run(tmp_path / "run", frames=4, gop=2, shape=(16, 16, 16), channels=2)
    out = bake_run(run, tmp_path / "baked")
    first = (out / "gop_00000.planes.zst").stat().st_mtime_ns
    second = Baked(out).atlas(1)
    (out / "gop_00001.planes.zst").unlink()  # as if killed during GOP 1
    (out / "baked.json").unlink()
    bake_run(run, out)
    assert (out / "gop_00000.planes.zst").stat().st_mtime_ns == first  # kept, not redone
    again = Baked(out).atlas(1)
    assert torch.equal(again.planes, second.planes) and again.ranges == second.ranges  # redone identically


def test_a_run_trained_again_into_its_folder_is_baked_again(tmp_path):
    # `featvid demo` retrains demo/run when the preset changes and bakes into the same demo/baked:
    # the same GOPs of other frames must not keep the old planes (they decoded 7.5 dB low)
    run = make_run(tmp_path / "run", frames=4, gop=2, shape=(16, 16, 16), channels=2, seed=0)
    out = bake_run(run, tmp_path / "baked")
    old = Baked(out).atlas(0).planes
    shutil.rmtree(run)
    shutil.copytree(make_run(tmp_path / "other", frames=4, gop=2, shape=(16, 16, 16), channels=2, seed=1), run)
    bake_run(run, out)
    fresh = Baked(bake_run(run, tmp_path / "fresh")).atlas(0).planes
    assert not torch.equal(old, fresh)
    assert torch.equal(Baked(out).atlas(0).planes, fresh)


def test_unfinished_run_is_refused(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    (run / "frames" / "00001.safetensors").unlink()
    with pytest.raises(FormatError, match="unfinished"):
        bake_run(run, tmp_path / "baked")


def test_nan_is_refused(tmp_path):
    run = make_run(tmp_path / "run", frames=2, gop=1, shape=(16, 16, 16), channels=2, nan_frame=1)
    with pytest.raises(FormatError, match="NaN"):
        bake_run(run, tmp_path / "baked")
    assert not (tmp_path / "baked" / "baked.json").exists()


def test_missing_baked_folder(tmp_path):
    with pytest.raises(FormatError, match="no baked.json"):
        Baked(tmp_path)


def test_recorded_config_of_a_run_folder(tmp_path):
    """What `featvid demo` and the benchmark cache compare to decide that a run is stale."""
    from featvid.train.config import preset
    from featvid.formats.run import recorded_config, write_run_meta

    assert recorded_config(tmp_path / "none") is None
    run = make_run(tmp_path / "run", frames=2, gop=2, shape=(16, 16, 16), channels=2)
    meta = json.loads((run / "run.json").read_text())
    meta.pop("format"), meta.pop("version")
    config = preset("test").to_dict()
    write_run_meta(run, {**meta, "config": config})
    assert recorded_config(run) == config
    assert recorded_config(run) != preset("fast").to_dict()
    (run / "run.json").write_text("{not json")
    assert recorded_config(run) is None
