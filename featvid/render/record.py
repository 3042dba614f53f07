"""Recording playback to an MP4: the frames a player shows, written as they are shown.

The file appears under its name only when the recording is finished (featvid.render.video.Mp4Writer
writes beside it and renames). When playback fails part way, `keep_partial` decides: keep what was
shown (real-time playback: the recording is a record of the session) or leave no file (an offline
render: half a video is no result).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from featvid.render.player import FrameCallback, PlaybackError, PlaybackStreamError
from featvid.render.video import Mp4Writer


@contextmanager
def recording(out: str | Path, fps: float, size: tuple[int, int], keep_partial: bool = False
              ) -> Iterator[FrameCallback]:
    """An `on_frame` callback for `play` that writes each frame to the H.264 MP4 `out` at `fps`.

    size: (width, height) pixels. On leaving the block the file is finished; when the block
    raises, it is dropped, unless `keep_partial` and the error is a playback failure after at least
    one frame was shown (then the frames shown are kept). The error is raised either way."""
    writer = Mp4Writer(out, fps, *size)
    try:
        yield lambda i, t, image: writer.write(image)
    except (PlaybackError, PlaybackStreamError) as e:
        if keep_partial and e.stats.frames_shown:
            writer.close()
        else:
            writer.abort()
        raise
    except BaseException:
        writer.abort()
        raise
    writer.close()
