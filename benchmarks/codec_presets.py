"""Benchmark codec presets and baselines (rate-distortion, speed, the VideoRF losses' effect).

    python benchmarks/codec_presets.py [--quick] [--out DIR] [--run RUN] [--data DATASET]

The same as `featvid bench`; the work is done by `featvid.bench`, this file is only an entry point.
"""
from __future__ import annotations

import sys

from featvid.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]], prog_name="codec_presets.py"))
