"""featvid command line: one click group, one command per job.

Library code raises `FeatvidError`; this module alone prints and picks exit codes. Every failure
is one line on stderr: a FeatvidError, a usage error (bad option, missing argument, bad value)
or a file system that refuses (name too long, read-only, full) is exit status 2; anything
unexpected is "featvid: internal error: ..." and exit status 1, with the traceback only under
`featvid --debug` or FEATVID_DEBUG=1.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from featvid.errors import FeatvidError
from featvid.limits import LEGACY_ENV  # a base module: no torch loaded for the CLI's options

DEBUG_ENV = "FEATVID_DEBUG"  # FEATVID_DEBUG=1: tracebacks instead of the one-line internal error
# OSErrors the user fixes (a name, a disk, a permission): one line and exit 2, like a FeatvidError
_USER_OS_ERRORS = {errno.ENAMETOOLONG, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM,
                   errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY, errno.ELOOP}


def _debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _os_error_line(e: OSError) -> str:
    where = e.filename if e.filename is not None else ""
    what = e.strerror or str(e)
    return _one_line(f"{where}: {what}" if where else what)


def _fail_unexpected(e: BaseException, debug: bool) -> None:
    """The last resort: an exception no code path expected becomes one line and exit 1 (or the
    traceback, re-raised, under --debug / FEATVID_DEBUG=1)."""
    if debug:
        e.featvid_debug = True  # type: ignore[attr-defined]  # main() lets it through as well
        raise e
    if isinstance(e, OSError) and e.errno in _USER_OS_ERRORS:
        click.echo(f"featvid: error: {_os_error_line(e)}", err=True)
        sys.exit(2)
    message = _one_line(e)[:300] or "(no message)"
    click.echo(f"featvid: internal error: {type(e).__name__}: {message} "
               f"(run with --debug or {DEBUG_ENV}=1 for the traceback)", err=True)
    sys.exit(1)


def _show_click_error(e: click.ClickException) -> None:
    """A click error (usage, bad value, missing argument) as one line; click's own would add the
    usage line and a hint."""
    hint = ""
    ctx = getattr(e, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        hint = f" (see `{ctx.command_path} --help`)"
    click.echo(f"featvid: error: {_one_line(e.format_message())}{hint}", err=True)


class _Command(click.Command):
    """A subcommand whose path arguments are checked against the file system's name limits as
    they are parsed, so a name too long for the disk is refused before any work."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from featvid.names import check_path_length

        rest = super().parse_args(ctx, args)
        for param in self.params:
            value = ctx.params.get(param.name or "")
            if isinstance(param.type, click.Path) and isinstance(value, (str, Path)):
                try:
                    check_path_length(value)
                except FeatvidError as e:
                    raise click.BadParameter(str(e), ctx=ctx, param=param) from None
        return rest


class _Group(click.Group):
    command_class = _Command

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except FeatvidError as e:
            click.echo(f"featvid: error: {_one_line(e)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("featvid: interrupted (finished work is kept)", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: main() shows them
        except Exception as e:  # MemoryError and RecursionError are Exceptions too
            _fail_unexpected(e, bool(ctx.params.get("debug")) or _debug_from_env())

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,  # type: ignore[override]
             **extra):
        """click's main, but every error it would print is one line (see _show_click_error), and
        anything unexpected outside a command goes through the last-resort handler."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `featvid`: the help, as click shows it
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            _show_click_error(e)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("featvid: interrupted", err=True)
            sys.exit(130)
        except Exception as e:
            _fail_unexpected(e, getattr(e, "featvid_debug", False) or _debug_from_env())
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class FiniteFloat(click.FloatRange):
    """A float option that must be a finite number (no inf, no nan), optionally within a range."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True,
              help=f"Show the traceback of an unexpected error instead of one line (also: {DEBUG_ENV}=1).")
@click.option("--legacy-read", is_flag=True,
              help=f"Read run, baked and stream folders that record no file hashes (from an older featvid), "
                   f"unverified, with a warning; without it they are refused (also: {LEGACY_ENV}=1).")
@click.version_option(package_name="featvid")
def main(verbose: int, debug: bool, legacy_read: bool) -> None:
    """featvid: volumetric (free-viewpoint) video as feature videos on standard codecs.

    \b
    Pipeline:  synth/dataset -> train -> bake -> encode -> render / play / serve
    Start with `featvid demo`, which runs all of it on the built-in scene.
    """
    if legacy_read:  # every folder reader asks featvid.formats.folder.legacy_read, which reads this
        os.environ[LEGACY_ENV] = "1"
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def parse_aabb(text: str | None):
    """'x0,y0,z0,x1,y1,z1' -> tensor [2, 3]; None or 'auto' -> None (the dataset's box, else estimated)."""
    if text is None or text.strip() == "auto":
        return None
    import torch

    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    if len(v) != 6 or not all(v[i] < v[i + 3] for i in range(3)):
        raise click.BadParameter("expected auto or six numbers x0,y0,z0,x1,y1,z1 with min < max", param_hint="--aabb")
    return torch.tensor([v[:3], v[3:]])


def parse_offsets(text: str | None, option: str, count: int | None = None) -> tuple[float, ...] | None:
    """'Q0,Q1,...' -> QP offsets (finite numbers; `count` of them when given); 'none' -> all 0;
    None: the preset's own."""
    if text is None:
        return None
    if text.strip() == "none":
        return () if count is None else (0.0,) * count
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if not v or not all(math.isfinite(q) for q in v) or (count is not None and len(v) != count):
        want = "numbers Q0,Q1,... (density's offset first)" if count is None else "two numbers INNER,SHELL"
        raise click.BadParameter(f"expected {want}, or none", param_hint=option)
    return v


def _dataset_formats() -> list[str]:
    from featvid.data.load import FORMAT_NAMES

    return FORMAT_NAMES


_AABB_HELP = ("Scene box in world units, x0,y0,z0,x1,y1,z1, or auto: the dataset's own box, else estimated from "
              "the space the cameras see, tightened by the masks or a quick coarse density pass "
              "(`featvid info DATASET` shows it and why).")


def dataset_options(command):
    """--format, --downscale and --masks: how a dataset folder is read (train, info, eval)."""
    command = click.option("--masks", default="auto", show_default=True, metavar="auto|none|DIR",
                           help="Foreground masks: auto (the dataset layout's mask videos or folders, or RGBA alpha), "
                                "none, or a folder with one mask video or image folder per camera, named like "
                                "the cameras. They composite the images onto the background and bound the box.")(command)
    command = click.option("--downscale", type=FiniteFloat(min=1.0), default=1.0, show_default=True,
                           help="Divide the image size by this (2: 1920x1080 -> 960x540); frames are decoded "
                                "as needed, never the whole clip.")(command)
    command = click.option("--format", "data_format", type=click.Choice(_dataset_formats()), default=None,
                           help="Dataset layout [default: detected from the folder's files].")(command)
    return command


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"featvid: warning: {line}", err=True)


# ---- data: synth, (info is below) ------------------------------------------------------------

def _scene_names() -> list[str]:
    from featvid.data.synth import SCENES

    return list(SCENES)


def _train_presets() -> list[str]:
    from featvid.train.config import PRESETS

    return list(PRESETS)


def _train_preset_help() -> str:
    """`train --preset`'s help: one line per preset, from the table beside PRESETS."""
    from featvid.train.config import PRESET_HELP

    return "Named training config:\n\n\b\n" + "\n".join(f"{name}: {text}" for name, text in PRESET_HELP.items())


def _codec_presets() -> list[str]:
    from featvid.codecs.presets import PRESETS

    return list(PRESETS)


def _backend_names() -> list[str]:
    from featvid.codecs.backends import BACKENDS

    return list(BACKENDS)


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scene", type=click.Choice(_scene_names()), default="dancer", show_default=True,
              help="Which built-in scene to render.")
@click.option("--frames", type=click.IntRange(1, 10000), default=8, show_default=True, help="Number of frames T (30 fps).")
@click.option("--views", type=click.IntRange(2, 1000), default=12, show_default=True,
              help="Cameras in all, including the held-out test views.")
@click.option("--test-views", type=click.IntRange(0, 999), default=2, show_default=True,
              help="How many of the views to hold out for evaluation (transforms_test.json).")
@click.option("--size", type=click.IntRange(8, 4096), default=64, show_default=True, help="Image height = width, pixels.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the scene's textures, colours and motion phase.")
@click.option("--backdrop", type=click.Choice(["scene", "none"]), default="scene", show_default=True,
              help="For room and forward: scene renders the room or wall (opaque images, no box given); none "
                   "renders the same subject with the same cameras alone on white (RGBA, the subject's box), "
                   "to compare a masked capture with one in a room. The other scenes have no backdrop.")
def synth(out: Path, scene: str, frames: int, views: int, test_views: int, size: int, seed: int,
          backdrop: str) -> None:
    """Render a built-in dynamic scene into OUT as a D-NeRF/Blender dataset.

    \b
    dancer, orbits, crossing: a subject on an empty background, cameras on the upper hemisphere
    around it (RGBA PNGs). room: the dancer inside a textured room, cameras on a ring inside it
    (give it many views: at 64 `fast` fits it 0.7 dB from the subject masked on white, at 24 8 dB:
    too few see each wall). forward: the dancer before a textured wall and floor 8 units behind
    it, cameras on a small ellipse in a plane in front (forward-facing, N3DV-like). room and
    forward look like real captures: opaque RGB images, no scene box in the JSON, and score_masks/ with the subject's
    foreground per image, which `featvid eval` uses for PSNR inside the foreground only (training
    never sees them). Ground truth is exact volume rendering of analytic fields;
    transforms_train.json / transforms_test.json give a per-image time. OUT must be new, empty,
    or an earlier synth folder (which is replaced).

    \b
    Examples:  featvid synth data/dancer --frames 8 --views 12 --size 64
               featvid synth data/room --scene room --views 64
               featvid synth data/room-white --scene room --views 64 --backdrop none
    """
    from featvid.data.synth import SCENES, write_synth

    if test_views >= views:
        raise click.BadParameter(f"must be smaller than --views ({views})", param_hint="--test-views")
    if backdrop == "none" and not SCENES[scene].has_backdrop:
        raise click.BadParameter(f"scene {scene} has no backdrop to leave out", param_hint="--backdrop")
    path = write_synth(out, scene=scene, frames=frames, views=views, size=size, seed=seed,
                       test_views=test_views, progress=True, backdrop=backdrop == "scene")
    click.echo(f"wrote {path}: scene {scene}{' (no backdrop)' if backdrop == 'none' else ''}, {frames} frames x "
               f"{views} views ({views - test_views} train + {test_views} test), {size}x{size} px")


@main.command("synth-gaussians")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scene", type=click.Choice(_scene_names()), default="dancer", show_default=True,
              help="Which built-in scene's surfaces to cover (room and forward: their subject alone).")
@click.option("--count", type=click.IntRange(1, 5_000_000), default=50_000, show_default=True,
              help="Gaussians per frame (the same Gaussians in every frame).")
@click.option("--frames", type=click.IntRange(1, 10000), default=30, show_default=True, help="Number of frames (30 fps).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the scene and of the Gaussians' placement.")
def synth_gaussians(out: Path, scene: str, count: int, frames: int, seed: int) -> None:
    """Write a dynamic 3D Gaussian sequence on a built-in scene into OUT: one 3DGS PLY a frame.

    \b
    Gaussians sit on the moving parts' surfaces (flat discs, SH degree 3, colour from the scene)
    and follow them frame to frame, keeping their identity: Gaussian i is the same piece of
    surface in every frame. Bake the folder with `featvid bake OUT --out BAKED` (docs/gaussians.md).

    \b
    Example:  featvid synth-gaussians seq --count 50000 --frames 30
    """
    from featvid.gaussians.generate import write_gaussian_sequence

    write_gaussian_sequence(out, scene, count, frames, seed)
    click.echo(f"wrote {out}: {frames} frames of {count} Gaussians (SH degree 3) on scene {scene}")


# ---- trainer: train ---------------------------------------------------------------------------


def _parse_frames(text: str | None) -> tuple[int, int] | None:
    """'A:B' -> (A, B), frames A..B-1 (either side may be empty: ':8', '2:')."""
    if text is None:
        return None
    try:
        a, b = text.split(":")
        return int(a) if a else 0, int(b) if b else -1
    except ValueError:
        raise click.BadParameter("expected A:B, e.g. 0:8 (frames A to B-1)", param_hint="--frames") from None


def _parse_gop(text: str | None) -> int | str | None:
    if text is None or text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter("expected a positive frame count or 'auto'", param_hint="--gop")


def _parse_settings(items: tuple[str, ...]) -> dict[str, Any]:
    """--set NAME=VALUE ... -> {flat name: value}; the value read as JSON, else kept as text (the
    config checks names and values: a wrong one is a ConfigError naming it)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--set")
        try:
            out[name.strip()] = json.loads(text)
        except ValueError:
            out[name.strip()] = text
    return out


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Run folder to write (or resume).")
@click.option("--preset", "preset_name", default="fast", show_default=True,
              type=click.Choice(_train_presets()), help=_train_preset_help())
@click.option("--frames", "frames", default=None, metavar="A:B", help="Dataset frames A..B-1 to train [default: all].")
@click.option("--grid", "grid", type=click.IntRange(8, 320), default=None,
              help="Fine grid resolution (vertices along the longest side) [default: the preset's]; at most 320, the largest grid a reader accepts.")
@click.option("--gop", "gop", default=None, metavar="N|auto",
              help="Frames per GOP, or auto: a new GOP where its keyframe costs fewer bytes than the union's "
                   "growth, within --set gop_growth / max_gop [default: the preset's].")
@click.option("--temporal-weight", type=FiniteFloat(min=0), default=None,
              help="Weight of the temporal L1 loss; 0 switches it off [default: the preset's].")
@click.option("--spatial-weight", type=FiniteFloat(min=0), default=None,
              help="Weight of the atlas smoothness loss; 0 switches it off [default: the preset's].")
@click.option("--density-tv", "density_tv", type=FiniteFloat(min=0), default=None,
              help="Weight of the density total variation on warm frames (fewer floaters); 0 switches "
                   "it off [default: the preset's].")
@click.option("--rate-weight", type=FiniteFloat(min=0), default=None, metavar="LAMBDA",
              help="Weight of the codec's estimated bits per atlas sample in the loss: fewer bytes for "
                   "some quality; 0 switches it off. Named, it holds in box and contracted grids alike "
                   "[default: the preset's; fast: 5e-4 in box grids, 0 in contracted ones].")
@click.option("--codec-loop", "codec_loop", default=None, metavar="PRESET",
              help="Render the fine pass through this codec preset's real encoder and decoder (the codec in "
                   "the loop: the model learns what the stream will decode), e.g. h264-crf16.5; none: off "
                   "[default: the preset's, off].")
@click.option("--distortion-weight", type=FiniteFloat(min=0), default=None,
              help="Weight of the distortion loss in a contracted grid (each ray's weight on one surface: "
                   "fewer floaters in front of the cameras); 0 switches it off [default: the preset's].")
@click.option("--importance", type=click.Choice(["ist", "isg", "none"]), default=None,
              help="Ray importance sampling of later frames [default: the preset's].")
@click.option("--motion/--no-motion", default=None,
              help="Warm-start later frames along the motion estimated from the coarse pass [default: on].")
@click.option("--space", type=click.Choice(["auto", "box", "contracted"]), default=None,
              help="What the grid holds: box (the scene box only), contracted (all of space: the scene box at "
                   "full resolution, a room or backdrop squeezed into a shell around it), auto (contracted when "
                   "the dataset has no masks) [default: the preset's, auto].")
@click.option("--colour-correction/--no-colour-correction", "colour_correction", default=None,
              help="Learn a per-camera colour correction (exposure, white balance) on the training views "
                   "only; the stream stays camera-independent [default: the preset's, off].")
@click.option("--keyframe-iters", type=click.IntRange(min=1), default=None, metavar="N",
              help="Iterations of the first keyframe's fit (a static capture has only it) "
                   "[default: the preset's].")
@click.option("--random-background/--no-random-background", "random_background", default=None,
              help="Composite each training ray over a random colour in a contracted grid (a capture "
                   "without masks): only opaque space matches the images, so the background colour "
                   "cannot paint a wall [default: the preset's].")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Any training config field by its flat name (as run.json's config; repeatable), e.g. "
                   "--set keyframe_tv_weight=0.003; the value is read as JSON, else as text.")
@click.option("--refresh-margin", type=FiniteFloat(min=0), default=None, metavar="DB",
              help="Refit a frame as a keyframe (a new GOP) when its quality falls this many dB below "
                   "its reference; 0 switches the refresh off [default: the preset's, 1].")
@click.option("--refresh-slope", type=FiniteFloat(min=0), default=None, metavar="DB",
              help="Take a refresh only when it pays: its gain must beat what its keyframe's bytes would buy "
                   "every frame, at this many dB per doubling of the stream's bytes; 0: whenever quality "
                   "falls below the margin [default: the preset's].")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where to train; cuda without a GPU is an error.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Random seed [default: the preset's, 0].")
@click.option("--force", is_flag=True, help="Start over in a folder that holds a run made with another config.")
@click.option("--aabb", default="auto", show_default=True, metavar="x0,y0,z0,x1,y1,z1|auto", help=_AABB_HELP)
@click.option("--segment", type=click.IntRange(min=1), default=None, metavar="S",
              help="Train in segments of S frames, each starting with a refreshed keyframe (frame 0's MLP "
                   "kept) and training on its own, so --workers can train them side by side; each segment "
                   "starts a GOP [default: the preset's, none].")
@click.option("--workers", "train_workers", type=click.IntRange(min=1), default=None,
              help="Train the segments (--segment) on this many workers at once; the run is the same bytes "
                   "for any number [default: one process, no workers].")
@click.option("--executor", "train_executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where --workers run: local (a process pool here) or ray (a Ray cluster; the run folder and "
                   "the dataset on a file system every node sees).")
@click.option("--address", "train_address", default=None,
              help="The Ray cluster to join with --executor ray (e.g. auto or 10.0.0.1:6379) [default: a local Ray].")
@dataset_options
def train(dataset: Path, out: Path, preset_name: str, frames: str | None, grid: int | None, gop: str | None,
          temporal_weight: float | None, spatial_weight: float | None, density_tv: float | None,
          rate_weight: float | None, codec_loop: str | None, distortion_weight: float | None, importance: str | None, motion: bool | None, space: str | None, colour_correction: bool | None,
          keyframe_iters: int | None, random_background: bool | None, settings: tuple[str, ...],
          refresh_margin: float | None, refresh_slope: float | None, device: str,
          seed: int | None, force: bool, aabb: str, segment: int | None, train_workers: int | None,
          train_executor: str, train_address: str | None, data_format: str | None, downscale: float,
          masks: str) -> None:
    """Fit DATASET (a multi-view video folder) frame after frame into a run folder.

    \b
    Two passes (VideoRF): a coarse pass gives every frame's occupancy and the GOPs; then the
    keyframe is trained with the MLP and each later frame starts from the one before, carried
    along the motion between their coarse densities. A frame that falls too far below its
    reference is fitted again as a keyframe and starts a new GOP; every fit stops once its loss
    stops improving (log.jsonl: iterations, motion and why each keyframe began).
    Killed? Rerun the same command: it resumes after the last finished frame.
    With --segment S the capture trains in segments of S frames, and --workers N trains N of them
    at once (docs/scale.md), e.g.  featvid train scene --out run --segment 8 --workers 2
    """
    from featvid.pipeline import train_dataset

    if train_workers is None and (train_executor != "local" or train_address is not None):
        raise click.UsageError("--executor and --address say where --workers run: give --workers N")
    if train_address is not None and train_executor != "ray":
        raise click.UsageError("--address joins a Ray cluster: it needs --executor ray")
    overrides = dict(grid_resolution=grid, gop=_parse_gop(gop), temporal_weight=temporal_weight,
                     spatial_weight=spatial_weight, density_tv_weight=density_tv, importance=importance,
                     seed=seed, motion=motion, refresh_margin=refresh_margin, refresh_slope=refresh_slope,
                     segment=segment, space=space,
                     colour_correction=colour_correction, keyframe_iters=keyframe_iters,
                     rate_weight=rate_weight, distortion_weight=distortion_weight,
                     codec_loop=None if codec_loop is None else ("" if codec_loop == "none" else codec_loop),
                     random_background=random_background)
    for name, value in _parse_settings(settings).items():
        if overrides.get(name) is not None:
            raise click.UsageError(f"--set {name} and the option of the same field both given: give one")
        overrides[name] = value
    options = dict(frames=_parse_frames(frames), aabb=parse_aabb(aabb), force=force, device=device, on_step=click.echo,
                   on_warning=lambda w: _warn([w]), format=data_format, downscale=downscale, masks=masks)
    if train_workers is not None:
        from featvid.batch.train_job import train_parallel

        summary = train_parallel(dataset, out, preset_name, overrides, train_workers, train_executor, train_address,
                                 **options)
    else:
        summary = train_dataset(dataset, out, preset_name, overrides, **options)
    click.echo(str(summary))


# ---- bake and encode: bake, encode, presets ------------------------------------------------------


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Baked folder to write (lossless atlas planes per GOP; resumes an interrupted bake).")
@click.option("--gop", "gop_frames", type=click.IntRange(1, 10000), default=None,
              help="Gaussian PLY folders only: frames per GOP, at most [default: 30]; a GOP also ends where "
                   "the Gaussian count changes.")
@click.option("--sh-degree", type=click.IntRange(0, 3), default=None,
              help="Gaussian PLY folders only: keep spherical harmonics up to this degree [default: the input's].")
@click.option("--fps", type=FiniteFloat(min=0.001, max=1000), default=30.0, show_default=True,
              help="Gaussian PLY folders only: frames per second of the sequence.")
@click.option("--background", default="1,1,1", show_default=True, metavar="R,G,B",
              help="Gaussian PLY folders only: the colour the sequence is seen on (0..1 each), for players.")
def bake(run_dir: Path, out: Path, gop_frames: int | None, sh_degree: int | None, fps: float, background: str) -> None:
    """Bake a finished RUN_DIR into lossless per-GOP atlas planes (bake once, encode many times).

    RUN_DIR may instead be a folder of 3D Gaussian Splatting PLY frames (name order, one a frame):
    it bakes into a Gaussian bake (docs/gaussians.md), which `featvid encode` turns into a stream.
    """
    from featvid.gaussians.ply import is_ply_folder

    if is_ply_folder(run_dir):
        from featvid.bake.gaussians import DEFAULT_GOP, bake_gaussians

        try:
            bg = tuple(float(x) for x in background.split(","))
        except ValueError:
            bg = ()
        if len(bg) != 3 or not all(0 <= c <= 1 for c in bg):
            raise click.BadParameter("expected three numbers in 0..1, e.g. 1,1,1", param_hint="--background")
        bake_gaussians(run_dir, out, gop=gop_frames or DEFAULT_GOP, sh_degree=sh_degree, fps=fps,
                       background=bg)  # type: ignore[arg-type]
        click.echo(f"baked Gaussian frames {run_dir} -> {out}")
        return
    if gop_frames is not None or sh_degree is not None:
        raise click.UsageError("--gop and --sh-degree apply to a folder of Gaussian PLY frames; a run has its GOPs")
    from featvid.bake import bake_run

    bake_run(run_dir, out)
    click.echo(f"baked {run_dir} -> {out}")


@main.command()
@click.argument("stream_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--frame", type=click.IntRange(min=0), required=True, help="Frame to export (0-based).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PLY file to write (binary little-endian 3DGS layout, for any 3DGS viewer).")
@click.option("--rendition", default=None, help="Which rendition of a ladder to decode [default: the main one].")
def export(stream_dir: Path, frame: int, out: Path, rendition: str | None) -> None:
    """Write frame N of a Gaussian stream STREAM_DIR back to a 3DGS PLY file (docs/gaussians.md)."""
    from featvid.codecs import open_stream
    from featvid.codecs.gaussians import decode_gaussians
    from featvid.gaussians.ply import write_ply
    from featvid.outputs import check_output_file

    check_output_file(out, [stream_dir])
    g = decode_gaussians(open_stream(stream_dir, hwaccel="none"), frame, rendition=rendition)
    write_ply(out, g)
    click.echo(f"exported frame {frame} of {stream_dir}: {g.count} Gaussians (SH degree {g.sh_degree}) -> {out}")


@main.command()
@click.argument("baked_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Stream folder to write, e.g. scene.fvv (its manifest.json is written last).")
@click.option("--preset", default=None, help="Codec preset (see `featvid presets`); default: the recommended one.")
@click.option("--crf", type=FiniteFloat(min=0), default=None,
              help="Override the preset's rate (crf; qp for NVENC). x264/x265 take fractions, e.g. 17.5.")
@click.option("--backend", type=click.Choice(_backend_names()), default="pyav", show_default=True,
              help="Codec back end: PyAV in process, or the ffmpeg command line.")
@click.option("--basis/--no-basis", "feature_basis", default=None,
              help="Code the features in the stream's sensitivity-weighted KLT basis, folded into the MLP "
                   "(17-27 % fewer bytes at the same PSNR) [default: the preset's; lossless presets: no].")
@click.option("--ladder", default=None, metavar="NAME|PRESET,PRESET,...",
              help="Adaptive streaming: every GOP in each of these presets, in one stream (players switch per GOP). "
                   "A named ladder (abr: web, web-crf20, web-crf24, web-crf29) or a comma list; instead of --preset.")
@click.option("--plane-qp", "plane_qp", default=None, metavar="Q0,Q1,...|none",
              help="QP offset of each atlas plane, density first, then the features (most informative first); "
                   "negative codes a plane finer, missing planes take 0. H.264/H.265 only "
                   "[default: the preset's, see `featvid presets`].")
@click.option("--space-qp", "space_qp", default=None, metavar="INNER,SHELL|none",
              help="A contracted grid's QP offsets: macroblocks that hold a vertex of the inner box (the subject) "
                   "and those that hold only the shell (the background); added to --plane-qp. H.264/H.265 only "
                   "[default: the preset's].")
def encode(baked_dir: Path, out: Path, preset: str | None, crf: float | None, backend: str,
           feature_basis: bool | None, ladder: str | None, plane_qp: str | None, space_qp: str | None) -> None:
    """Encode BAKED_DIR (from `featvid bake`) into a stream folder of standard videos."""
    from featvid.codecs import encode_baked, open_stream

    if ladder is not None and any(v is not None for v in (preset, crf, plane_qp, space_qp)):
        raise click.UsageError("--ladder names every rendition's preset: it takes no --preset, --crf, --plane-qp "
                               "or --space-qp")
    encode_baked(baked_dir, out, preset, crf=crf, backend=backend, feature_basis=feature_basis, ladder=ladder,
                 plane_qp=parse_offsets(plane_qp, "--plane-qp"), space_qp=parse_offsets(space_qp, "--space-qp", 2))
    s = open_stream(out, hwaccel="none").summary()
    if len(s["renditions"]) == 1:
        click.echo(f"encoded {out}: {s['frames']} frames, {s['preset']} ({s['codec']}), "
                   f"{s['bytes_per_frame']['total'] / 1024:.1f} KiB/frame")
        return
    click.echo(f"encoded {out}: {s['frames']} frames, {len(s['renditions'])} renditions, "
               f"{s['bytes_per_frame']['total'] / 1024:.1f} KiB/frame stored")
    _echo_renditions(s["renditions"])


@main.command()
def presets() -> None:
    """List the codec presets and whether each encoder can run on this machine."""
    from featvid.codecs.presets import DEFAULT_PRESET, PRESETS, SPACE_QP, encoder_available

    for p in PRESETS.values():
        ok = encoder_available(p.codec, p.pix_fmt)
        state = "yes" if ok else (f"no (falls back to {p.fallback})" if p.fallback else "no")
        mark = "*" if p.name == DEFAULT_PRESET else " "
        click.echo(f"{mark} {p.name:18s} {p.codec:11s} {p.pix_fmt:12s} {p.packing:16s} available: {state:28s} {p.description}")
    click.echo(f"* default ({DEFAULT_PRESET})")
    click.echo(f"The lossy H.264 presets code a contracted grid's inner box at QP {SPACE_QP[0]:+g} and its shell at "
               f"{SPACE_QP[1]:+g} (encode --space-qp, --plane-qp).")


# ---- batch jobs: batch ---------------------------------------------------------------------------

_EXECUTOR_HELP = "Where tasks run: local (a process pool of this machine) or ray (Ray; pip install 'featvid[ray]')."
_ADDRESS_HELP = ("Ray cluster to join (e.g. auto on a cluster node, or ray://HEAD:10001); "
                 "default: start a local Ray instance. Only with --executor ray.")
_WORKERS_HELP = "Tasks at a time [default: this machine's cores (local), the cluster's CPUs (ray)]."


@main.command()
@click.argument("jobs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help=_EXECUTOR_HELP)
@click.option("--address", default=None, help=_ADDRESS_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=None, help=_WORKERS_HELP)
def batch(jobs: Path, executor: str, address: str | None, workers: int | None) -> None:
    """Bake and encode many sequences x presets, GOP by GOP, from the job file JOBS (TOML or JSON).

    \b
    The job file lists sequences (a run or a baked folder each), the encodes to make of them
    (presets, crf lists, ladders) and optionally a dataset to score every output on.
    Each run is baked GOP by GOP, then each stream encoded GOP by GOP, with one small task per
    output writing its manifest (baked.json) last; the bytes are the same with either executor.
    Killed? Rerun the same command: only unfinished GOPs are redone, finished outputs are kept.
    A failed task is retried (`retries` in the job file); then the job names what failed and
    exits with status 2, with every other output complete. Format: docs/batch.md. Example:
      featvid batch job.toml --executor local --workers 2
    """
    from featvid.batch import JobFailed, run_job_file

    if address is not None and executor != "ray":
        raise click.UsageError("--address joins a Ray cluster: it needs --executor ray")
    report = run_job_file(jobs, executor, workers, address, progress=True)
    click.echo(report.table())
    if not report.ok:
        bad = [f.label for f in report.failures] or [r.output for r in report.rows if r.status not in ("done", "kept")]
        raise JobFailed(f"{len(bad)} of the job's tasks or outputs failed (first: {bad[0]}); "
                        "the rest is complete: fix the cause and rerun to finish")


# ---- playback: render, play ----------------------------------------------------------------------

class SizeType(click.ParamType):
    """'WxH' (e.g. 1920x1080) -> (width, height) in pixels, both positive."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split("x")
        try:
            w, h = (int(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not WIDTHxHEIGHT in pixels (e.g. 512x512)", param, ctx)
        if w <= 0 or h <= 0 or w * h > 8192 * 8192:
            self.fail(f"{value!r}: width and height must be positive (at most 8192x8192 pixels)", param, ctx)
        return (w, h)


_PATH_HELP = ("Camera path: orbit or spiral around the scene box, test (the dataset's held-out cameras; "
              "needs --data), or a JSON path file (format: see `featvid render --help`).")


@main.command()
@click.argument("stream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--path", "path_kind", default="orbit", show_default=True, metavar="orbit|spiral|test|FILE.json",
              help=_PATH_HELP)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="MP4 to write (H.264, yuv420p).")
@click.option("--size", type=SizeType(), default=None,
              help="Image size WxH in pixels [default: 512x512 for orbit/spiral, the path's own otherwise].")
@click.option("--frames", "-n", type=click.IntRange(min=1), default=None,
              help="Output frames [default: the stream's frame count, or the path file's]; time runs t = i mod T.")
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=None, help="Frame rate of the MP4 [default: the stream's].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--hwaccel", type=click.Choice(["auto", "cuda", "none"]), default="auto", show_default=True,
              help="Hardware video decoding.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Dataset folder (for --path test).")
def render(stream: Path, path_kind: str, out: Path, size, frames, fps, device, hwaccel, data) -> None:
    """Render a free-viewpoint video of STREAM (a .fvv folder) along a camera path to an MP4.

    A Gaussian stream (manifest representation "gaussians") is splatted (gsplat on CUDA where
    installed, else featvid's torch rasterizer) over its background colour.

    Time advances with the path: output frame i shows stream frame i mod T.

    \b
    Camera path file (--path FILE.json), cameras in the OpenCV convention
    (x right, y down, z forward):
      {"width": 640, "height": 480,
       "fov_x_deg": 50,                 (or "K": [[fx,0,cx],[0,fy,cy],[0,0,1]])
       "convention": "opencv",          (optional; "opengl" for Blender poses)
       "frames": [{"c2w": [[..4..],[..4..],[..4..],[0,0,0,1]], "t": 0}, ...]}
    "t" (stream frame index) is optional. A wrong field is an error naming it.
    """
    from featvid.outputs import check_output_file
    from featvid.render.playback import render_path_video

    target = check_output_file(out, [stream, *([data] if data else [])])  # before any rendering
    stats = render_path_video(stream, path_kind, target, size=size, device=device, frames=frames, fps=fps,
                              data=data, hwaccel=hwaccel)
    click.echo(f"wrote {out} ({stats.frames_shown} frames, {stats.width}x{stats.height})")
    click.echo(f"rendered at {stats.achieved_fps:.2f} fps on {stats.device} "
               f"(decode {stats.decode_ms_per_frame:.1f} ms/frame, render {stats.render_ms_per_frame:.1f} ms/frame)")


@main.command()
@click.argument("stream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fps", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Target frame rate; late frames are dropped [default: the stream's].")
@click.option("--size", type=SizeType(), default="512x512", show_default=True, help="Image size WxH in pixels.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--hwaccel", type=click.Choice(["auto", "cuda", "none"]), default="auto", show_default=True,
              help="Hardware video decoding.")
@click.option("--duration", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Seconds to play [default: one pass through the stream].")
@click.option("--frames", "-n", type=click.IntRange(min=1), default=None, help="Output frames to play (instead of --duration).")
@click.option("--path", "path_kind", default="orbit", show_default=True, metavar="orbit|spiral|test|FILE.json",
              help="Camera path (see `featvid render --help`).")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Dataset folder (for --path test).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also record the frames shown to this MP4.")
@click.option("--decode-only", is_flag=True,
              help="Decode every frame to dequantized grids on --device and render nothing; report decode speed.")
@click.option("--bandwidth", type=FiniteFloat(min=0, min_open=True), default=None, metavar="KBPS",
              help="Simulate a link of KBPS kbit/s: each GOP's rendition is chosen by the ABR rule (or --rendition), "
                   "startup and stalls are waited out, and switches, stalls and time per rendition are reported.")
@click.option("--rendition", default=None, metavar="NAME",
              help="Play this rendition of a multi-rendition stream (see `featvid info STREAM`) [default: the first; "
                   "with --bandwidth: the ABR rule's choice].")
def play(stream: Path, fps, size, device, hwaccel, duration, frames, path_kind, data, out, decode_only,
         bandwidth, rendition) -> None:
    """Play STREAM headless in real time: decode ahead, render at --fps, drop late frames, report.

    With --decode-only: the decoder alone, every frame of every GOP (after one warm-up pass,
    repeated for at least --duration seconds when given).
    """
    from featvid.render.decode_bench import decode_only as decode_stream
    from featvid.render.playback import play_stream

    if decode_only:
        if out is not None or frames is not None or bandwidth is not None or rendition is not None:
            raise click.UsageError("--decode-only renders nothing: it takes no --out, --frames, --bandwidth or --rendition")
        click.echo(decode_stream(stream, device, hwaccel, min_seconds=duration or 0.0, progress=True).summary())
        return

    if duration is not None and frames is not None:
        raise click.UsageError("give --duration or --frames, not both")
    from featvid.outputs import check_output_file

    target = None if out is None else check_output_file(out, [stream, *([data] if data else [])])
    stats = play_stream(stream, path_kind, fps=fps, size=size, device=device, hwaccel=hwaccel, frames=frames,
                        duration=duration, out=target, data=data, bandwidth=bandwidth, rendition=rendition)
    click.echo(stats.summary())
    if out is not None:
        click.echo(f"recorded {out}")


# ---- benchmarks: bench ------------------------------------------------------------------------------

@main.command()
@click.option("--quick", is_flag=True, help="The reduced matrix on a tiny scene (a few minutes on 2 CPU cores).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("benchmarks/results"), show_default=True,
              help="Folder of results.json, results.md, rd.png and the resumable results.jsonl.")
@click.option("--run", "run", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Benchmark this finished run instead of training the built-in scene.")
@click.option("--data", "data", type=click.Path(path_type=Path, exists=True), default=None,
              help="The dataset to measure PSNR against (default: the run's own, or the built-in scene).")
@click.option("--cache", "cache", type=click.Path(path_type=Path), default=Path("benchmarks/cache"), show_default=True,
              help="Where trained runs, bakes and the synthetic scene are kept between benchmark runs.")
@click.option("--no-ablation", is_flag=True, help="Skip retraining without the temporal / spatial loss.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Measure the points as tasks on this executor (see `featvid batch`) [default: in this process, "
                   "one after another]. Bytes and PSNR are the same; times are then taken side by side.")
@click.option("--address", default=None, help=_ADDRESS_HELP)
@click.option("--workers", type=click.IntRange(min=1), default=None, help=_WORKERS_HELP)
def bench(quick: bool, out: Path, run: Path | None, data: Path | None, cache: Path, no_ablation: bool,
          executor: str | None, address: str | None, workers: int | None) -> None:
    """Compare codec presets and baselines: rate-distortion, speed, and what the VideoRF losses buy.

    Resumable: finished points are kept in OUT/results.jsonl and skipped on the next run.
    """
    from dataclasses import replace

    from featvid.batch import make_executor
    from featvid.bench import bench_command, full_config, quick_config, run_bench

    make = quick_config if quick else full_config
    config = make(out=out, cache=cache, run=run, data=data)
    if no_ablation:
        config.matrix = replace(config.matrix, ablation=False)
    if (address is not None or workers is not None) and executor is None:
        raise click.UsageError("--address and --workers go with --executor local|ray")
    ex = make_executor(executor, workers, address) if executor else None
    try:
        report = run_bench(config, command=bench_command(config, executor, workers), executor=ex)
    finally:
        if ex is not None:
            ex.close()
    best = report.summary.get("best")
    if best:
        click.echo(f"best preset within 0.5 dB of the float model: {best['id']} "
                   f"{best['bytes_per_frame'] / 1024:.2f} KB/frame at {best['psnr']:.2f} dB")
    for name, path in report.files.items():
        click.echo(f"{name}: {path}")


# ---- web player: serve ------------------------------------------------------------------------------

@main.command("serve")
@click.argument("stream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. The default is loopback only; 0.0.0.0 exposes the stream to the network "
                   "(browsers then need https or a tunnel to localhost: the player's WebCodecs decoder wants a secure context).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True, help="Open the player in the default browser.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests whose Host header is NAME (repeatable). localhost, 127.0.0.1, [::1] and the "
                   "--host address are always answered; any other name gets 421, against DNS rebinding.")
def serve_cmd(stream: Path, host: str, port: int, open_browser: bool, allow_hosts: tuple[str, ...]) -> None:
    """Play the stream STREAM (a NAME.fvv folder, `web` preset) in the browser.

    Serves the WebGL2 player at / and the stream's files under /stream/. The player decodes the
    H.264 atlas videos with the browser's video decoder and ray-marches them on the GPU. A ladder
    (`featvid encode --ladder abr`) is played adaptively: each GOP in the rendition the measured
    throughput allows, or the one chosen in the player's menu. Stop with Ctrl-C.
    """
    import webbrowser

    from featvid.render.serve import serve

    server = serve(stream, host, port, allowed_hosts=allow_hosts)
    click.echo(f"featvid: serving {stream} at {server.url}  (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ---- info, eval, demo ----------------------------------------------------------------------------------


def _echo_summary(summary: dict) -> None:
    import json

    for key, value in summary.items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        click.echo(f"{key:>22}: {value}")


def _echo_renditions(renditions: list[dict]) -> None:
    for r in renditions:
        click.echo(f"  rendition {r['name']:16s} {r['codec']:10s} {r['kbit_per_second']:9.1f} kbit/s average "
                   f"{r['peak_kbit_per_second']:9.1f} peak  {r['bytes_per_frame'] / 1024:7.2f} KiB/frame to a viewer")


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--aabb", default="auto", show_default=True, metavar="x0,y0,z0,x1,y1,z1|auto",
              help="For a DATASET: a box x0,y0,z0,x1,y1,z1 to check against the subject, or auto: show the box "
                   "`train` would use and why.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="For a DATASET: where the scene box's density pass runs.")
@dataset_options
def info(path: Path, as_json: bool, aabb: str, device: str, data_format: str | None, downscale: float,
         masks: str) -> None:
    """Describe a DATASET, a training RUN, a BAKED folder or a STREAM (.fvv).

    For a dataset: views, frames, image size, split, and the scene box train would use and why
    (aabb, aabb_source, aabb_reason). For a stream: frames, GOPs, codec, preset and bytes per
    frame in total and by part.
    """
    import json

    from featvid.pipeline import describe, kind_of

    if kind_of(path) != "dataset" and (data_format is not None or downscale != 1.0 or masks != "auto"
                                       or aabb != "auto"):
        raise click.UsageError("--aabb, --format, --downscale and --masks describe a dataset folder")
    summary = describe(path, aabb=parse_aabb(aabb), downscale=downscale, format=data_format, masks=masks,
                       device=device)
    _warn(summary.pop("aabb_warnings", []))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif "renditions" in summary and "holes" in summary:  # a stream: its ladder and holes readably
        renditions, holes = summary.pop("renditions"), summary.pop("holes")
        _echo_summary(summary)
        click.echo(f"{'renditions':>22}: {len(renditions)}")
        _echo_renditions(renditions)
        click.echo(f"{'holes':>22}: {len(holes) or 'none'}")
        for h in holes:
            click.echo(f"  GOP {h['gop']}: no {h['rendition']} video ({h['file']} is missing); players fall back")
    else:
        _echo_summary(summary)


@main.command()
@click.argument("stream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line, not one line per file.")
def verify(stream: Path, quiet: bool) -> None:
    """Check every file of STREAM against the size and SHA-256 its manifest records.

    STREAM may also be a run folder (checked against its files.json) or a baked folder (its
    baked.json). Prints one line per file that matches and a summary; on the first file that
    does not, one line naming it and exit status 2 (as for a folder that records no hashes).
    """
    from featvid.pipeline import kind_of

    kind = kind_of(stream)
    if kind == "run":
        from featvid.formats.run import Run

        checked, against = list(Run(stream).verify()), "files.json"
    elif kind == "baked":
        from featvid.formats.baked import Baked

        checked, against = list(Baked(stream).verify()), "baked.json"
    else:
        from featvid.codecs import open_stream

        checked, against = list(open_stream(stream, hwaccel="none").verify()), "the manifest"  # all or nothing
    if not quiet:
        for name, size in checked:
            click.echo(f"OK {size:>12} {name}")
    click.echo(f"featvid: {stream}: {len(checked)} files, {sum(s for _, s in checked)} bytes match {against}")


@main.command(name="eval")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dataset whose held-out views are the ground truth (for a Gaussian stream also a folder of "
                   "the PLY frames it came from: both rendered through 8 held-out cameras).")
@click.option("--aabb", default=None, metavar="x0,y0,z0,x1,y1,z1|auto",
              help="Scene box of the dataset [default: the run's or stream's own, which the grids index].")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@dataset_options
def eval_cmd(source: Path, data: Path, aabb: str | None, out: Path | None, device: str, data_format: str | None,
             downscale: float, masks: str) -> None:
    """PSNR/SSIM of a RUN or a STREAM on the dataset's held-out views (a Gaussian stream: splatted).

    A stream is evaluated exactly like the run it came from, so the codec's cost is
    one subtraction. Read the dataset as it was trained: the same --format, --downscale, --masks.
    Where the dataset has scoring masks (a per-image "score_mask_path", as `featvid synth --scene
    room|forward` writes), it also reports PSNR inside the subject's foreground (psnr_fg) and
    outside it (psnr_bg), in the table, the summary line and the JSON.
    """
    from featvid.atomic import write_json
    from featvid.outputs import check_output_file
    from featvid.pipeline import evaluate_source

    target = None if out is None else check_output_file(out, [source, data])  # before the evaluation
    report = evaluate_source(source, data, parse_aabb(aabb), device, downscale=downscale, format=data_format,
                             masks=masks)
    click.echo(report.table())
    click.echo(f"mean PSNR {report.mean_psnr:.2f} dB, SSIM {report.mean_ssim:.4f}")
    if report.mean_psnr_fg is not None:  # the dataset has scoring masks (featvid synth --scene room|forward)
        bg = "" if report.mean_psnr_bg is None else f", outside it {report.mean_psnr_bg:.2f} dB"
        click.echo(f"mean PSNR inside the foreground (psnr_fg) {report.mean_psnr_fg:.2f} dB{bg}")
    if target is not None:
        write_json(target, report.to_json())
        click.echo(f"wrote {out}")


@main.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for everything the demo makes.")
@click.option("--scene", type=click.Choice(_scene_names()), default=None,
              help="Built-in scene (see `featvid synth --help`) [default: dancer].")
@click.option("--frames", default=8, show_default=True, type=click.IntRange(2, 300))
@click.option("--views", default=24, show_default=True, type=click.IntRange(4, 100),
              help="Cameras in all (2 held out). More views cost synthesis time only, and generalise better.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(16, 1024), help="Image height = width.")
@click.option("--preset", "train_preset", default="demo", show_default=True, type=click.Choice(_train_presets()),
              help="Training preset.")
@click.option("--codec-preset", default=None, type=click.Choice(_codec_presets()),
              help="Codec preset (see `featvid presets`) [default: the recommended one].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def demo(out: Path, scene: str | None, frames: int, views: int, size: int, train_preset: str,
         codec_preset: str | None, device: str) -> None:
    """Run the whole pipeline on the built-in dynamic scene.

    synth -> train -> eval -> bake -> encode (default and web presets) -> eval the stream ->
    orbit video. Finished steps are kept, so a second run only repeats what is missing.
    """
    from featvid.pipeline import run_demo

    r = run_demo(out, scene, frames, views, size, train_preset, codec_preset, device, on_step=click.echo)
    click.echo("")
    click.echo(f"held-out PSNR   float model {r['psnr_float']:6.2f} dB   after the codec "
               f"{r['psnr_stream']:6.2f} dB   ({r['psnr_stream'] - r['psnr_float']:+.2f} dB)")
    click.echo(f"bytes per frame stream {r['stream_bytes_per_frame'] / 1024:8.1f} KiB ({r['codec_preset']})   "
               f"float16 sparse grids {r['float16_grid_bytes_per_frame'] / 1024:8.1f} KiB   "
               f"({r['ratio_vs_float16_grids']:.0f}x smaller)")
    click.echo(f"orbit video     {r['paths']['orbit']}")
    click.echo(f"web player      featvid serve {r['paths']['web']}   (then open http://127.0.0.1:8000/)")
    click.echo(f"summary         {Path(r['paths']['out']) / 'demo.json'}   ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
