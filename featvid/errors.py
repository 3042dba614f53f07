"""The one exception hierarchy of featvid. Library code raises these; only the CLI prints them."""


class FeatvidError(Exception):
    """Base class: anything the user can fix (bad input, missing file, unsupported option)."""


class DatasetError(FeatvidError):
    """A dataset on disk is missing, unreadable or inconsistent."""


class ConfigError(FeatvidError):
    """An option, preset or config value is invalid or does not fit the run."""


class TrainingError(FeatvidError):
    """Training cannot go on (non-finite loss, device missing)."""


class FormatError(FeatvidError):
    """A file or folder on disk is missing, malformed, of another kind or too large to be what it claims."""


class StreamError(FormatError):
    """A stream, baked folder or video file is missing, foreign, truncated or corrupt."""


class CodecError(FeatvidError):
    """An encoder or decoder failed or is not available."""


class RenderError(FeatvidError):
    """Rendering or playback cannot go on (bad camera path, bad size)."""


class OutputError(FeatvidError):
    """An output cannot be written where it was asked: the path holds something else (an input, another
    kind of folder, a FIFO or device), or the file system refused the write (read-only, full, no permission)."""
