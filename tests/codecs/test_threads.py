"""A GOP is the same bytes whatever machine encodes it: the presets pin the encoders' threading
(left to itself an encoder sizes its threads by the machine's cores, and codes differently)."""
from __future__ import annotations

import hashlib
import io

import av
import numpy as np
import pytest

from featvid.codecs.presets import PRESETS, pin_threads


def _frames(n: int = 3, width: int = 768, height: int = 384) -> list[np.ndarray]:
    """[H, W, 3] uint8 frames of smooth noise, 768 wide: VP9 then codes several tile columns (its
    threads work on tiles)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        gray = gaussian_filter(rng.integers(0, 256, (height, width)).astype(float), 2).astype(np.uint8)
        out.append(np.repeat(gray[:, :, None], 3, axis=2))
    return out


def _encode(codec: str, pix_fmt: str, options: dict[str, str], cores: int) -> str:
    """sha256 of the frames encoded with `options`, the codec's thread count first set to `cores`
    (what libavcodec's auto threading picks on a machine of that many cores)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = 768, 384
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = 3
        stream.codec_context.thread_count = cores
        stream.options = dict(options)
        for i, img in enumerate(_frames()):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.mark.parametrize("name", ["h264-crf16.5", "h265-crf23", "vp9-crf32"])
def test_a_preset_encodes_the_same_bytes_on_machines_of_1_and_4_cores(name):
    p = PRESETS[name]
    pix_fmt = "yuv420p"
    assert _encode(p.codec, pix_fmt, p.encoder_options(), 1) == _encode(p.codec, pix_fmt, p.encoder_options(), 4)


def test_without_the_pin_x264_codes_differently_by_core_count():
    """The control: why the pin is there (measured: 1 and 4 threads give other bytes)."""
    p = PRESETS["h264-crf16.5"]
    loose = {k: v for k, v in p.encoder_options().items() if k != "threads"}
    assert _encode(p.codec, "yuv420p", loose, 1) != _encode(p.codec, "yuv420p", loose, 4)


def test_pin_threads_keeps_x265_params_and_replaces_a_pool_size():
    opts = pin_threads("libx265", {"x265-params": "bframes=0:pools=8:log-level=error"})
    assert opts["x265-params"] == "bframes=0:log-level=error:pools=1:frame-threads=1"
    assert pin_threads("libsvtav1", {"preset": "8"}) == {"preset": "8"}  # its bytes do not depend on threads
