"""The baker: a finished run folder -> a baked folder of lossless atlas planes (featvid.formats.baked).

    bake_run(run_dir, baked_dir)    the whole run, GOP after GOP (featvid.bake.atlas)
"""
from featvid.bake.atlas import bake_run

__all__ = ["bake_run"]
