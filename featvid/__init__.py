"""featvid: volumetric video as feature videos on standard codecs (the VideoRF way)."""

from featvid.errors import FeatvidError

__version__ = "0.1.0"
__all__ = ["FeatvidError", "__version__"]
