"""featvid: volumetric video as feature videos on standard codecs (the VideoRF way).

The Python API (featvid/api.py) is here, loaded on first use so that `import featvid` (and
`import featvid.errors`) stays cheap, without torch:

    import featvid
    run = featvid.train_run("scene", "run", preset="fast")
    featvid.encode_stream(featvid.bake_run(run, "baked"), "scene.fvv")
"""
from __future__ import annotations

from typing import Any

from featvid.errors import FeatvidError

__version__ = "0.1.0"

# the API's functions, imported from featvid.api when first asked for (PEP 562)
_API = ("synth_scene", "train_run", "bake_run", "encode_stream", "open_stream", "render_video", "evaluate",
        "describe")
__all__ = ["FeatvidError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from featvid import api

        return getattr(api, name)
    raise AttributeError(f"module 'featvid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
