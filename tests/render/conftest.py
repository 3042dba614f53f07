"""Fixtures of the render tests: a rendition ladder of the trained tiny scene (`tiny_baked`)."""
from __future__ import annotations

from pathlib import Path

import pytest

LADDER = ("web", "web-crf24", "web-crf29")  # the tiny scene's ladder: web-shaped, top to bottom


@pytest.fixture(scope="session")
def ladder_stream(tiny_baked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_baked` (4 frames, 2 or more GOPs) encoded as a three-rendition ladder (version-2 stream)."""
    from featvid.codecs import encode_baked

    return encode_baked(tiny_baked, tmp_path_factory.mktemp("ladder") / "ladder.fvv", ladder=",".join(LADDER))
