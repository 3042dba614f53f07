"""Fine-pass training step: time per iteration against the grid size, the dense step against the
sparse one, side by side in one run.

    flock /tmp/featvid-cpu.lock .venv/bin/python benchmarks/train_step.py [--sizes 32,64,128]
        [--iters 9] [--warmup 2] [--threads 1] [--preset fast] [--out DIR]

The scene: the built-in dancer at frame 0, 24 cameras of 64 x 64 (the demo's rig), its occupancy
on an n^3 grid the way the trainer's looks (vertices within 1.5 voxels of the surface or inside,
grown to the mapping's 4^3 blocks: `Mapping.occupancy()`), starting values from the SDF (opaque
inside, empty outside, random features). One step is a warm frame's step of fit_frame: 4096 rays
drawn, rendered with jitter, photometric + temporal + spatial (atlas) + density TV losses (the
`fast` preset's weights; `--preset quality` times that preset's step: its rays, channels, MLP and
weights), backward, Adam, the clamps. Two paths:

- dense: the step as it was -- the values table scattered into the dense volume [1 + C, n, n, n]
  each step, `volume.render_rays` (grid_sample) and the dense regularisers differentiated through it;
- sparse: `SparseField.render` (trilinear gather from the table, its own backward) and the sparse
  regularisers (`losses.atlas_smoothness_sparse`, `losses.density_tv_sparse`).

Both paths take the same rays (equally seeded generators) from the same start; every size runs
the two paths in blocks of consecutive steps (dense, sparse, sparse, dense), `--iters` timed steps
a path in all, after `--warmup` untimed ones a block; figures are medians. Goal (issue #25): the
sparse step at 128^3 within 2x of 64^3. Writes train_step.json and
train_step.md under benchmarks/results/ (or --out). Not a test: a minute or more of CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from featvid.bench.results import write_results  # noqa: E402
from featvid.data.synth import SCENE_AABB, get_scene, render_cameras  # noqa: E402
from featvid.field.mapping import Mapping  # noqa: E402
from featvid.field.mlp import TinyMLP  # noqa: E402
from featvid.field.volume import DENSITY_RANGE, RenderSettings, Volume, render_rays  # noqa: E402
from featvid.train import losses  # noqa: E402
from featvid.train.config import PRESETS, TrainConfig, preset  # noqa: E402
from featvid.train.sampling import RaySampler  # noqa: E402
from featvid.train.sparse_field import SparseField  # noqa: E402

GOAL_RATIO = 2.0  # sparse step at 128^3 over 64^3


def scene_images(views: int, size: int) -> tuple[RaySampler, "object"]:
    """The dancer at frame 0: a RaySampler of its views on white, and the scene (for its SDF)."""
    scene = get_scene("dancer")
    cams, _, _ = scene.rig(views, size, 0)
    rgba = render_cameras(scene, cams, 0.0, supersample=1)  # [V, H, W, 4]
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return RaySampler(rgb.contiguous(), cams), scene


def scene_grid(scene, n: int, channels: int) -> tuple[torch.Tensor, Mapping, torch.Tensor]:
    """(occupancy [n, n, n] bool, its mapping, start values [N, 1 + C]) of the scene on an n^3 grid."""
    axis = torch.linspace(0, 1, n)
    lo, ext = SCENE_AABB[0], SCENE_AABB[1] - SCENE_AABB[0]
    voxel = float(ext.max()) / (n - 1)
    sdf = torch.empty(n, n, n)
    for i in range(n):  # one x-slice at a time: [n * n, 3] points
        y, z = torch.meshgrid(axis, axis, indexing="ij")
        p = torch.stack([torch.full_like(y, float(axis[i])), y, z], -1).reshape(-1, 3) * ext + lo
        sdf[i] = scene.sdf(p, 0.0).view(n, n)
    mapping = Mapping.from_occupancy(sdf < 1.5 * voxel)
    occ = mapping.occupancy()
    g = torch.Generator().manual_seed(0)
    values = torch.randn(int(occ.sum()), 1 + channels, generator=g) * 0.5  # [N, 1 + C]
    values[:, 0] = torch.where(sdf[occ] < 0, 15.0, -5.0)
    return occ, mapping, values


class Step:
    """One path's fit_frame step on a warm frame (the temporal loss pulls to the start values)."""

    def __init__(self, dense: bool, occ: torch.Tensor, mapping: Mapping, values: torch.Tensor, mlp: TinyMLP,
                 sampler: RaySampler, config: TrainConfig) -> None:
        self.dense, self.mapping, self.mlp, self.sampler, self.config = dense, mapping, mlp, sampler, config
        self.field = SparseField(occ, SCENE_AABB, "cpu")
        self.previous = values
        self.param = torch.nn.Parameter(values.clone())
        self.opt = torch.optim.Adam([{"params": [self.param], "lr": config.optim.lr_grid_frame}])
        self.generator = torch.Generator().manual_seed(1)
        self.settings = RenderSettings()
        self.samples = 0

    def __call__(self) -> float:
        """One step; returns its photometric loss."""
        c, param = self.config, self.param
        origins, dirs, target = self.sampler.sample(c.optim.batch_rays, self.generator)
        jitter = torch.rand(len(origins), generator=self.generator)
        if self.dense:
            dense = self.field.dense(param)  # [1 + C, n, n, n]
            out = render_rays(Volume(dense, self.field.cell_occ, self.field.aabb), self.mlp, origins, dirs,
                              self.settings, jitter)
            spatial = losses.atlas_smoothness(dense, self.mapping, c.losses.density_scale)
            tv = losses.density_tv(dense)
        else:
            out = self.field.render(param, self.mlp, origins, dirs, self.settings, jitter)
            terms = self.field.atlas_terms(self.mapping)
            spatial = losses.atlas_smoothness_sparse(param, terms, c.losses.density_scale)
            tv = losses.density_tv_sparse(param, self.field.tv_terms())
        self.samples = len(out["ray_id"])
        mse = losses.photometric(out["rgb"], target)
        loss = (mse + c.losses.temporal_weight * losses.temporal(param, self.previous, c.losses.density_scale)
                + c.losses.spatial_weight * spatial + c.losses.density_tv_weight * tv)
        losses.optimizer_step(self.opt, loss, 1.0)
        with torch.no_grad():
            param[:, 0].clamp_(*DENSITY_RANGE)
            param[:, 1:].clamp_(-c.optim.feature_range, c.optim.feature_range)
        return float(mse.detach())


def timed(fn: Callable[[], float]) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, fn's value). On a shared machine the CPU time is
    the steadier figure: other people's work stretches the wall clock, not it."""
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - w0, time.process_time() - c0, value


def measure(n: int, sampler: RaySampler, scene, iters: int, warmup: int, preset_name: str = "fast") -> dict:
    config = preset(preset_name)  # its batch, rates, loss weights, channels and MLP (the grid is n^3 here)
    occ, mapping, values = scene_grid(scene, n, config.grid.channels)
    mlp = TinyMLP(config.mlp_config())
    mlp.requires_grad_(False)  # a warm frame: lr_mlp_frame is 0
    steps = {name: Step(name == "dense", occ, mapping, values, mlp, sampler, config) for name in ("dense", "sparse")}
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    mse: dict[str, list[float]] = {name: [] for name in steps}
    setup = {}
    t0 = time.perf_counter()
    steps["sparse"].field.atlas_terms(mapping), steps["sparse"].field.tv_terms()  # built once a fit
    setup["sparse_pairs_s"] = time.perf_counter() - t0
    # blocks of consecutive steps, as a fit runs them (alternating single steps would let the
    # dense path's volume evict the sparse path's tables from the caches): dense then sparse, then
    # sparse then dense; the first `warmup` steps of each block are not timed
    for order in (("dense", "sparse"), ("sparse", "dense")):
        for name in order:
            for i in range(warmup + (iters + 1) // 2):
                dt, dc, loss = timed(steps[name])
                mse[name].append(loss)
                if i >= warmup:
                    times[name].append(dt)
                    cpu[name].append(dc)
    row = {"n": n, "preset": preset_name, "mlp_hidden": config.mlp.hidden, "vertices": n ** 3, "stored": int(occ.sum()),
           "occupied_fraction": round(float(occ.float().mean()), 4),
           "channels": config.grid.channels, "rays": config.optim.batch_rays, "samples": steps["sparse"].samples,
           **{f"{k}": round(v, 3) for k, v in setup.items()}}
    for name in steps:
        row[f"{name}_ms"] = round(1000 * statistics.median(times[name]), 1)
        row[f"{name}_cpu_ms"] = round(1000 * statistics.median(cpu[name]), 1)
        row[f"{name}_ms_all"] = [round(1000 * t, 1) for t in times[name]]
    # same rays, same start: the two paths learn the same (float rounding apart)
    row["mse_last"] = {name: mse[name][-1] for name in steps}
    row["speedup"] = round(row["dense_ms"] / row["sparse_ms"], 2)
    row["speedup_cpu"] = round(row["dense_cpu_ms"] / row["sparse_cpu_ms"], 2)
    return row


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [f"# Fine-pass training step: dense vs sparse ({result['threads']} thread(s), {result['machine']})", "",
             "| grid | stored vertices | occupied | samples / step | dense ms / it (CPU) | sparse ms / it (CPU) "
             "| speedup (CPU) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']}³ | {r['stored']:,} | {100 * r['occupied_fraction']:.1f} % | {r['samples']:,} | "
                     f"{r['dense_ms']} ({r['dense_cpu_ms']}) | {r['sparse_ms']} ({r['sparse_cpu_ms']}) | "
                     f"{r['speedup']}x ({r['speedup_cpu']}x) |")
    lines.append("")
    for key, label in (("ratio_128_64", "128³ over 64³"), ("ratio_192_64", "192³ over 64³")):
        if key in result:
            r = result[key]
            lines.append(f"- {label}: sparse {r['sparse']}x (CPU time {r['sparse_cpu']}x), dense {r['dense']}x "
                         f"(CPU time {r['dense_cpu']}x); goal: sparse within {GOAL_RATIO}x at 128³")
    lines += ["", f"Medians of {result['iters']} steps a path (blocks of consecutive steps, {result['warmup']} "
              "untimed ones first in each; the wall clock, and in brackets this process's CPU time: steadier "
              "on a shared machine), on the dancer (frame 0, 24 views of 64 px), "
              f"the `{result.get('preset', 'fast')}` preset's warm-frame step. "
              "`python benchmarks/train_step.py` re-measures; the machine is shared, so compare within a run."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,128", help="grid sizes n (n^3 vertices), comma separated")
    ap.add_argument("--iters", type=int, default=8, help="timed steps per path and size (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each block of steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: what torch picks)")
    ap.add_argument("--views", type=int, default=24, help="training views of the scene")
    ap.add_argument("--size", type=int, default=64, help="image size of the views, pixels")
    ap.add_argument("--preset", default="fast", choices=sorted(PRESETS),
                    help="the preset whose step is timed (its rays, channels, MLP, loss weights)")
    ap.add_argument("--out", default=str(ROOT / "results"), help="folder for train_step.json and .md")
    ap.add_argument("--name", default="train_step", help="file name of the results (without extension)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]  # 1-minute load average: how shared the machine was
    sampler, scene = scene_images(args.views, args.size)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, sampler, scene, args.iters, args.warmup, args.preset))
        print(f"{n}^3: dense {rows[-1]['dense_ms']} ms ({rows[-1]['dense_cpu_ms']} CPU), "
              f"sparse {rows[-1]['sparse_ms']} ms ({rows[-1]['sparse_cpu_ms']} CPU)", file=sys.stderr)
    result = {"threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "torch": torch.__version__, "iters": args.iters, "warmup": args.warmup, "views": args.views,
              "image_size": args.size, "preset": args.preset, "rows": rows}
    by_n = {r["n"]: r for r in rows}
    for big in (128, 192):
        if big in by_n and 64 in by_n:
            result[f"ratio_{big}_64"] = {f"{p}{t}": round(by_n[big][f"{p}{t}_ms"] / by_n[64][f"{p}{t}_ms"], 2)
                                         for p in ("dense", "sparse") for t in ("", "_cpu")}
    write_results(args.out, args.name, result, table(result))
    print(table(result))


if __name__ == "__main__":
    main()
