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

# ---- info, eval, demo ----------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
