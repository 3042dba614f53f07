"""featvid command line: one click group, one command per job.

Library code raises `FeatvidError`; this module alone prints and picks exit codes: a FeatvidError
becomes one line on stderr and exit status 2, with no traceback.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from featvid.errors import FeatvidError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except FeatvidError as e:
            click.echo(f"featvid: error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("featvid: interrupted (finished work is kept)", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="featvid")
def main(verbose: int) -> None:
    """featvid: volumetric (free-viewpoint) video as feature videos on standard codecs.

    \b
    Pipeline:  synth/dataset -> train -> bake -> encode -> render / play / serve
    Start with `featvid demo`, which runs all of it on the built-in scene.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def parse_aabb(text: str | None):
    """'x0,y0,z0,x1,y1,z1' -> tensor [2, 3] (or None)."""
    if text is None:
        return None
    import torch

    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    if len(v) != 6 or not all(v[i] < v[i + 3] for i in range(3)):
        raise click.BadParameter("expected six numbers x0,y0,z0,x1,y1,z1 with min < max", param_hint="--aabb")
    return torch.tensor([v[:3], v[3:]])


# ---- data: synth, (info is below) ------------------------------------------------------------

# ---- trainer: train ---------------------------------------------------------------------------

# ---- bake and encode: bake, encode, presets ------------------------------------------------------

# ---- playback: render, play ----------------------------------------------------------------------

# ---- benchmarks: bench ------------------------------------------------------------------------------

# ---- web player: serve ------------------------------------------------------------------------------

@main.command("serve")
@click.argument("stream", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. The default is loopback only; 0.0.0.0 exposes the stream to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True, help="Open the player in the default browser.")
def serve_cmd(stream: Path, host: str, port: int, open_browser: bool) -> None:
    """Play the stream STREAM (a NAME.fvv folder, `web` preset) in the browser.

    Serves the WebGL2 player at / and the stream's files under /stream/. The player decodes the
    H.264 atlas videos with the browser's video decoder and ray-marches them on the GPU.
    Stop with Ctrl-C.
    """
    import webbrowser

    from featvid.render.serve import serve

    server = serve(stream, host, port)
    click.echo(f"featvid: serving {stream} at {server.url}  (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ---- info, eval, demo ----------------------------------------------------------------------------------


def _kind_of(path: Path) -> str:
    """'stream', 'run', 'baked' or 'dataset', from the files in a folder."""
    if (path / "manifest.json").is_file() or path.suffix == ".fvv":
        return "stream"
    if (path / "run.json").is_file():
        return "run"
    if (path / "baked.json").is_file():
        return "baked"
    return "dataset"


def _echo_summary(summary: dict) -> None:
    import json

    for key, value in summary.items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        click.echo(f"{key:>22}: {value}")


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Describe a DATASET, a training RUN or a STREAM (.fvv).

    For a stream: frames, GOPs, codec, preset and bytes per frame in total and by part.
    """
    import json

    kind = _kind_of(path)
    if kind == "stream":
        from featvid.codecs import open_stream

        summary = open_stream(path).summary()
    elif kind == "run":
        from featvid.bake.run import Run

        summary = Run(path).summary()
    elif kind == "baked":
        from featvid.bake.atlas import Baked

        summary = Baked(path).summary()
    else:
        from featvid.data import load_dataset

        summary = load_dataset(path).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _echo_summary(summary)


@main.command(name="eval")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dataset whose held-out views are the ground truth.")
@click.option("--aabb", default=None, help="Scene box x0,y0,z0,x1,y1,z1 if the dataset needs one.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON here.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def eval_cmd(source: Path, data: Path, aabb: str | None, out: Path | None, device: str) -> None:
    """PSNR/SSIM of a RUN or a STREAM on the dataset's held-out views.

    A stream is evaluated exactly like the run it came from, so the codec's cost is
    one subtraction.
    """
    from featvid.atomic import write_json

    report = evaluate_source(source, data, parse_aabb(aabb), device)
    click.echo(report.table())
    click.echo(f"mean PSNR {report.mean_psnr:.2f} dB, SSIM {report.mean_ssim:.4f}")
    if out is not None:
        write_json(out, report.to_json())
        click.echo(f"wrote {out}")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present, else 'cpu'; 'cuda' without one is an error."""
    import torch

    from featvid.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available")
    return device


def evaluate_source(source: Path, data: Path, aabb=None, device: str = "auto"):
    """Evaluate a run or a stream folder against a dataset (returns an EvalReport)."""
    from featvid.data import load_dataset
    from featvid.render.evaluate import evaluate

    device = resolve_device(device)
    if _kind_of(source) == "stream":
        from featvid.codecs import open_stream

        stream = open_stream(source)
        frames = enumerate(stream.frames())
        mlp, settings, aabb = stream.mlp(device), stream.render_settings, aabb if aabb is not None else stream.aabb
    else:
        from featvid.bake.run import Run

        run = Run(source)
        frames = run.frames()
        mlp, settings, aabb = run.mlp(device), run.render_settings, aabb if aabb is not None else run.aabb
    video = load_dataset(data, aabb=aabb)
    return evaluate(frames, mlp, settings, video, device=device)


if __name__ == "__main__":
    main()
