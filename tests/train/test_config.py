"""TrainConfig: nested sections, the flat form old run folders hold, the preset rules, validation."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from featvid.cli import main
from featvid.errors import ConfigError
from featvid.field.mlp import MLPConfig
from featvid.formats.run import Run, write_run_meta
from featvid.pipeline import ensure_run
from featvid.train.config import (CONTRACTED_FOLLOWS, FLAT_NAMES, PRESET_HELP, PRESET_RULES, PRESETS, SECTIONS,
                                  TrainConfig, derive_overrides, preset, preset_and_derived)
from featvid.train.summary import TrainSummary
from featvid.train.train import train

# run.json's "config" of a `fast` run as featvid wrote it before the config had sections (printed by
# `json.dumps(dataclasses.asdict(preset('fast')))` with that checkout): old run folders hold this.
FLAT_FAST = {
    "grid_resolution": 48, "coarse_resolution": 24, "num_channels": 6, "step_ratio": 0.5, "mlp_hidden": 32,
    "mlp_layers": 2, "view_freqs": 2, "coarse_iters": 100, "coarse_frame_iters": 20, "coarse_lr": 0.3,
    "occupancy_alpha": 0.05, "occupancy_dilation": 1, "gop": 10, "gop_growth": 0.25, "max_gop": 30,
    "keyframe_iters": 600, "keyframe_iters_min": 600, "refresh_iters": 300, "frame_iters": 240,
    "frame_iters_min": 180, "plateau": 0.01, "plateau_window": 20, "batch_rays": 4096, "lr_grid": 0.1,
    "lr_grid_frame": 0.2, "lr_mlp": 0.003, "lr_mlp_frame": 0.0, "lr_decay": 0.3, "feature_range": 2.0,
    "motion": True, "motion_search": 3, "motion_window": 5, "geometry_refresh": 0.5, "refresh_margin": 1.0,
    "validation_views": 0, "temporal_weight": 0.1, "spatial_weight": 0.003, "density_tv_weight": 0.003,
    "density_reg_scale": 0.1, "importance": "ist", "importance_floor": 0.05, "isg_gamma": 0.02,
    "importance_window": 2, "seed": 0, "eval_heldout": True,
}


# -- the two forms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_nested_form_round_trips_through_json(name: str):
    config = PRESETS[name]
    nested = json.loads(json.dumps(config.to_dict()))
    assert set(nested) == set(SECTIONS) | {"seed", "eval_heldout"}
    assert all(isinstance(nested[s], dict) for s in SECTIONS)
    assert TrainConfig.from_dict(nested) == config
    assert TrainConfig.from_dict(config.flat()) == config  # and the flat form of the same config


def test_flat_dict_of_an_old_run_reads_as_the_preset_it_was():
    config = TrainConfig.from_dict(FLAT_FAST)
    # fields added since read as what such a run did: no colour correction, the box (not "auto")
    added = {"colour_correction": False, "colour_weight": 0.01, "space": "box", "segment": 0,
             "keyframe_tv_weight": 0.0, "coarse_contracted_iters": 0, "distortion_weight": 0.0,
             "rate_weight": 0.0, "rate_qp": 16.5, "codec_loop": "", "codec_refresh": 30, "codec_start": 0.5,
             "codec_change": 0.5, "random_background": False, "contracted_resolution": None,
             "contracted_keyframe_iters": None, "contracted_keyframe_tv_weight": None, "contracted_view_freqs": None,
             "refresh_slope": 0.0, "keyframe_rate_weight": None, "contracted_rate_weight": None}
    def as_before(**changes):  # `fast` without what was added to it since
        return preset("fast", space="box", coarse_contracted_iters=0, random_background=False, refresh_slope=0.0,
                      gop=10, gop_growth=0.25, rate_weight=0.0, keyframe_iters=600, keyframe_iters_min=600,
                      refresh_iters=300, **changes)._changed(dict.fromkeys(CONTRACTED_FOLLOWS))

    assert config == as_before()
    assert config.flat() == {**FLAT_FAST, **added}  # nothing lost or renamed on the way
    assert config.grid.resolution == 48 and config.gop.length == 10 and config.sampling.importance == "ist"
    # a run recorded before the density TV existed has no such field: it trained without it
    older = {k: v for k, v in FLAT_FAST.items() if k != "density_tv_weight"}
    assert TrainConfig.from_dict(older) == as_before(density_tv_weight=0.0)
    assert as_before().matches(FLAT_FAST) and preset("fast").matches(preset("fast").to_dict())
    assert not preset("demo").matches(FLAT_FAST) and not preset("fast").matches({"bogus": 1})


def test_every_flat_name_maps_to_one_field():
    targets = list(FLAT_NAMES.values())
    assert len(set(targets)) == len(targets)
    nested_fields = {(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert set(targets) == nested_fields | {(None, "seed"), (None, "eval_heldout")}


@pytest.mark.parametrize("bad", [
    {**FLAT_FAST, "bogus": 1},  # a field of another version
    {"grid": {"resolution": 48, "bogus": 1}},
    {"grid": {"resolution": 48}, "bogus": {}},
    {"grid": {"resolution": 48}, "coarse_iters": 100},  # the two forms mixed
    {"grid": 48, "mlp": {}},
    [1, 2],
])
def test_unknown_or_mixed_fields_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig.from_dict(bad)


def test_an_old_run_folder_resumes_and_is_not_stale(tiny_run: Path, tiny_dataset: Path, tmp_path: Path):
    """A finished run whose run.json holds the flat config: the same config resumes it (nothing left
    to train), ensure_run keeps it, another config is still refused."""
    from tests.fixtures.train import TINY_RUN_GOP, TINY_RUN_GRID, TINY_RUN_PRESET

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    config = preset(TINY_RUN_PRESET, grid_resolution=TINY_RUN_GRID, gop=TINY_RUN_GOP)
    meta = {k: v for k, v in Run(old).meta.items() if k not in ("format", "version")}
    assert meta["config"] == config.to_dict()  # today's runs record the nested form
    write_run_meta(old, {**meta, "config": config.flat()})
    assert "grid_resolution" in json.loads((old / "run.json").read_text())["config"]
    run = train(tiny_dataset, old, config, device="cpu")
    assert run.is_complete() and run.meta["config"] == config.flat()  # resumed, not rewritten
    run, retrained = ensure_run(tiny_dataset, old, config, device="cpu")
    assert not retrained and run.is_complete()
    with pytest.raises(ConfigError, match="config fields: seed"):
        train(tiny_dataset, old, config.with_overrides(seed=5), device="cpu")


# -- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("override", [
    {"importance": "sometimes"}, {"importance": 3}, {"gop": "often"}, {"gop": 0}, {"gop": True},
    {"gop": 2.5}, {"motion_window": 4}, {"motion_window": True}, {"lr_grid": math.nan}, {"lr_grid": math.inf},
    {"lr_grid": 0.0}, {"plateau": 1.0}, {"lr_decay": 0.0}, {"batch_rays": 8}, {"grid_resolution": 2000},
    {"num_channels": 0}, {"mlp_hidden": 256}, {"eval_heldout": 1}, {"motion": "yes"}, {"seed": 1.5},
    {"occupancy_alpha": 1.0}, {"refresh_margin": -1.0}, {"validation_views": 17}, {"temporal_weight": -0.1},
])
def test_values_that_cannot_work_are_a_config_error(override):
    with pytest.raises(ConfigError, match="train config"):
        PRESETS["default"].with_overrides(**override)


def test_sections_check_themselves_and_are_frozen():
    from featvid.train.config import GopConfig, SamplingConfig

    with pytest.raises(ConfigError, match="sampling.importance"):
        SamplingConfig(importance="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gop.length"):
        GopConfig(length="never")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sampling.importance"):
        TrainConfig.from_dict({"sampling": {"importance": "x"}})
    assert GopConfig(length="auto").length == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["fast"].grid.resolution = 8  # type: ignore[misc]


def test_mlp_default_is_what_the_trainer_builds():
    assert MLPConfig().in_features == TrainConfig().grid.channels
    assert TrainConfig().mlp_config() == MLPConfig(6, 32, 2, 2)


# -- the preset rules -------------------------------------------------------------------------------
def test_a_coarser_fine_grid_brings_the_coarse_grid_down_and_says_so():
    config, derived = preset_and_derived("fast", grid_resolution=16)
    assert config.grid.resolution == 16 and config.grid.coarse_resolution == 8
    # ... and --grid names the resolution in contracted grids too (fast's own is 64 there)
    assert [(d.name, d.was, d.value, d.source) for d in derived] == [
        ("coarse_resolution", 24, 8, "grid_resolution"), ("contracted_resolution", 64, None, "grid_resolution")]
    assert "coarse_resolution 24 -> 8" in str(derived[0])
    assert config.in_space("contracted").grid.resolution == 16
    # a fine grid still at least the coarse one changes nothing else
    config, derived = preset_and_derived("fast", grid_resolution=32, contracted_resolution=40)
    assert config.grid.coarse_resolution == 24 and derived == []
    assert config.in_space("contracted").grid.resolution == 40 and config.in_space("box").grid.resolution == 32


def test_a_contracted_grid_trains_with_its_own_values():
    """`fast` on a capture without masks (docs/training.md: the fox 25.08 -> 27.18 dB held-out)."""
    fast = preset("fast")
    assert fast.in_space("box") is fast
    real = fast.in_space("contracted")
    assert (real.grid.resolution, real.schedule.keyframe_iters, real.schedule.keyframe_iters_min) == (64, 1600, 1600)
    assert real.losses.keyframe_tv_weight == 0.003 and real.mlp.view_freqs == 0 and real.mlp_config().view_freqs == 0
    assert real.schedule.refresh_iters == fast.schedule.refresh_iters == 600  # still at most the keyframe's
    assert real.in_space("contracted") == real  # applied once: the section is emptied
    # what run.json records is the config as given (a resume matches it), not the applied one
    assert fast.matches(json.loads(json.dumps(fast.to_dict()))) and not real.matches(fast.to_dict())
    with pytest.raises(ConfigError, match="contracted.resolution"):
        preset("fast", contracted_resolution=4)


def test_fast_charges_the_rate_in_box_grids_only_unless_told():
    """BOX_RATE: the rate term where its cost is small (BENCHMARKS.md, "The rate term by default");
    --rate-weight named alone sets it in every space, as --grid does the resolution."""
    fast = preset("fast")
    assert fast.in_space("box").losses.rate_weight == 5e-4
    assert fast.in_space("contracted").losses.rate_weight == 0.0
    told, derived = preset_and_derived("fast", rate_weight=1e-3)
    assert told.in_space("contracted").losses.rate_weight == 1e-3 == told.in_space("box").losses.rate_weight
    assert [(d.name, d.was, d.source) for d in derived] == [("contracted_rate_weight", 0.0, "rate_weight")]
    both = preset("fast", rate_weight=1e-3, contracted_rate_weight=2e-4)
    assert both.in_space("contracted").losses.rate_weight == 2e-4
    with pytest.raises(ConfigError, match="contracted.rate_weight"):
        preset("fast", contracted_rate_weight=-1.0)


def test_fewer_most_iterations_bring_the_fewest_down_and_more_leave_them():
    config, derived = preset_and_derived("test", keyframe_iters=30, frame_iters=10)
    s = config.schedule
    assert (s.keyframe_iters, s.keyframe_iters_min, s.refresh_iters, s.frame_iters, s.frame_iters_min) == (30, 30, 30, 10, 10)
    assert {d.name for d in derived} == {"keyframe_iters_min", "refresh_iters", "frame_iters_min"}
    config, derived = preset_and_derived("test", keyframe_iters=5000, frame_iters=500)
    base = PRESETS["test"].schedule
    assert (config.schedule.keyframe_iters_min, config.schedule.refresh_iters, config.schedule.frame_iters_min) == \
        (base.keyframe_iters_min, base.refresh_iters, base.frame_iters_min) and derived == []


def test_overrides_that_contradict_each_other_are_refused_not_changed():
    with pytest.raises(ConfigError, match="coarse_resolution"):
        preset("fast", grid_resolution=16, coarse_resolution=24)
    with pytest.raises(ConfigError, match="keyframe_iters_min"):
        preset("test", keyframe_iters=30, keyframe_iters_min=40)
    with pytest.raises(ConfigError, match="frame_iters_min"):
        preset("test", frame_iters_min=500)
    with pytest.raises(ConfigError, match="refresh_iters"):
        preset("test", refresh_iters=301)
    # with_overrides applies no rule: exactly what is named, or an error
    with pytest.raises(ConfigError, match="coarse_resolution"):
        PRESETS["fast"].with_overrides(grid_resolution=16)
    with pytest.raises(ConfigError, match="unknown"):
        preset("fast", grid=16)
    with pytest.raises(ConfigError, match="unknown train preset"):
        preset("fastest")


def test_every_rule_guards_a_checked_constraint():
    """Each rule exists because its dependent may not exceed its source: naming both the wrong way
    round is an error, and what the rule derives is valid."""
    for rule in PRESET_RULES:
        with pytest.raises(ConfigError):
            PRESETS["default"].with_overrides(**{rule.source: 16, rule.dependent: 17})
        changes, derived = derive_overrides(PRESETS["default"], {rule.source: 16})
        assert rule.dependent in {d.name for d in derived}
        PRESETS["default"].with_overrides(**changes)


# -- presets in the CLI -------------------------------------------------------------------------------
def test_train_help_lists_every_preset_one_line_each():
    assert set(PRESET_HELP) == set(PRESETS)
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0, result.output
    for name, text in PRESET_HELP.items():
        assert f"{name}: {text}" in result.output


def test_train_summary_of_a_run(tiny_run: Path):
    summary = TrainSummary.of(Run(tiny_run))
    assert summary.frames == 4 and summary.gops >= 2 and summary.warm_iters is not None
    assert str(summary).startswith(f"trained 4 frames into {tiny_run}") and "GOPs" in str(summary)
