"""The play loop: decode GOPs ahead on one thread, render them at the target rate on another.

- The decode thread (featvid.render.buffer) walks the GOPs the camera path needs, in order, and
  hands each decoded GOP (a list of SparseGrids) to the renderer through a queue. Before decoding
  it takes one of `gop_slots` slots (default 2); the renderer gives a slot back when it is done
  with a GOP. So at most two GOPs are alive at any time - the one on screen and the next one,
  decoded or being decoded - whatever the stream's length.
- The render loop (the calling thread: it owns the GPU context and sees Ctrl-C) shows output
  frame i at start + i / fps. A frame whose slot has passed when its turn comes is dropped, not
  rendered late, so playback keeps time when rendering or decoding cannot; with `fps=None` it
  renders every frame as fast as it can (what `render_path_video` does).
- Every blocking queue/slot operation has a timeout and checks a stop Event, so an exception on
  either side stops both: a decode failure surfaces as a StreamError/RenderError saying how many
  frames were shown, and the frames shown so far have been passed to the callback.

Frames go to a callback `on_frame(i, t, image)` (image [H, W, 3] float32 in [0, 1], on the
render device); headless playback discards them, featvid.render.record writes them to an MP4.

Renditions (adaptive streaming): each GOP visit of the path may be decoded in its own rendition
(`renditions`, chosen by featvid.render.renditions). Given a simulated link's report
(featvid.render.abr), real-time playback waits out its startup and stalls (the clock stops, as a
browser's does while it rebuffers), and the stats report switches, stalls and time per rendition.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from featvid.errors import FeatvidError, FormatError, RenderError, StreamError
from featvid.progress import progress_bar
from featvid.render.abr import LinkReport
from featvid.render.buffer import END, POLL_S, Decoded, Decoder, Failed, GopSlots
from featvid.render.fast import FastRenderer, synchronize
from featvid.render.gops import gop_table, gop_visits
from featvid.render.paths import CameraPath
from featvid.render.source import PlayableStream
from featvid.render.splats import SplatRenderer  # a Gaussian stream's frames are splatted

log = logging.getLogger(__name__)

FrameCallback = Callable[[int, int, torch.Tensor], None]  # (output frame i, stream frame t, image [H, W, 3])


@dataclass
class PlaybackStats:
    """What a playback run achieved. Times in milliseconds per frame, rates in frames per second."""

    frames_shown: int = 0  # output frames rendered and handed to the callback
    frames_dropped: int = 0  # output frames skipped because their time slot had passed
    frames_decoded: int = 0  # stream frames decoded (whole GOPs)
    gops_decoded: int = 0
    decode_ms_per_frame: float = 0.0  # decode thread wall time per decoded frame
    render_ms_per_frame: float = 0.0  # dense volume build + ray march + MLP per shown frame
    output_ms_per_frame: float = 0.0  # the callback (e.g. MP4 encoding) per shown frame
    achieved_fps: float = 0.0  # frames shown per second of wall time
    target_fps: float | None = None  # None: as fast as possible, nothing dropped
    wall_s: float = 0.0  # from the first frame's slot to the end (stalls waited for the link included)
    startup_s: float = 0.0  # from start to the first GOP decoded (not in wall_s)
    max_gops_alive: int = 0  # most decoded GOPs held at once (bounded by the slots)
    device: str = "cpu"
    width: int = 0
    height: int = 0
    renditions: list[str] | None = None  # the rendition of each GOP visit, when one was chosen
    fallbacks: list[str] | None = None  # "GOP g: rendition X is missing, played Y instead" for each hole met
    link: LinkReport | None = None  # the simulated link's report (play --bandwidth)
    visit_seconds: list[float] | None = None  # play time of each GOP visit (for the link report)
    stalled_s: float = 0.0  # wall time waited for the link (startup not included)

    @property
    def decode_fps(self) -> float:
        """Stream frames decoded per second of decode-thread time."""
        return 1000.0 / self.decode_ms_per_frame if self.decode_ms_per_frame > 0 else 0.0

    @property
    def render_fps(self) -> float:
        return 1000.0 / self.render_ms_per_frame if self.render_ms_per_frame > 0 else 0.0

    def to_dict(self) -> dict:
        d = {**asdict(self), "decode_fps": self.decode_fps, "render_fps": self.render_fps}
        d["link"] = self.link.to_dict(self.visit_seconds or []) if self.link is not None else None
        return d

    def summary(self) -> str:
        """A few human lines for the CLI."""
        target = f"{self.target_fps:g}" if self.target_fps else "unthrottled"
        text = (f"{self.frames_shown} frames shown, {self.frames_dropped} dropped at {self.width}x{self.height} "
                f"on {self.device}; achieved {self.achieved_fps:.1f} fps (target {target})\n"
                f"decode {self.decode_ms_per_frame:.1f} ms/frame ({self.decode_fps:.0f} fps), "
                f"render {self.render_ms_per_frame:.1f} ms/frame ({self.render_fps:.1f} fps), "
                f"GOPs in memory at most {self.max_gops_alive}")
        if self.link is not None:
            text += "\n" + self.link.summary(self.visit_seconds or [])
        elif self.renditions:
            spent: dict[str, int] = {}
            for r in self.renditions:
                spent[r] = spent.get(r, 0) + 1
            text += "\nrenditions (GOP visits): " + ", ".join(f"{n} {c}" for n, c in spent.items())
            text += "".join(f"\n{line}" for line in self.fallbacks or [])
        return text


class PlaybackError(RenderError):
    """Playback stopped early; `stats` holds what was shown until then."""

    def __init__(self, message: str, stats: PlaybackStats) -> None:
        super().__init__(message)
        self.stats = stats


class PlaybackStreamError(StreamError):
    """A stream that failed mid-playback; `stats` holds what was shown until then."""

    def __init__(self, message: str, stats: PlaybackStats) -> None:
        super().__init__(message)
        self.stats = stats


def play(stream: PlayableStream, path: CameraPath, renderer: FastRenderer | SplatRenderer, fps: float | None = 30.0,
         on_frame: FrameCallback | None = None, gop_slots: int = 2, progress: bool = False,
         stop: threading.Event | None = None, timeout_s: float = 600.0,
         renditions: list[str] | None = None, link: LinkReport | None = None) -> PlaybackStats:
    """Play `path` through `stream`: decode ahead, render at `fps` (None: every frame, unthrottled).

    renditions: the rendition of each GOP visit of the path (`gop_visits`), default the stream's
    main one; link: a simulated link's report (featvid.render.abr.simulate over these visits): its
    renditions are played, and at a target fps its startup and stalls are waited out.

    Returns PlaybackStats; raises PlaybackError (a RenderError, with `.stats`) when decoding or
    rendering fails, PlaybackStreamError (a StreamError, with `.stats`) when the stream is at
    fault, after the frames shown so far went to `on_frame`. `timeout_s` bounds the wait
    for any single GOP, so a stalled decoder cannot hang playback.
    """
    if fps is not None and not fps > 0:
        raise RenderError(f"fps must be positive, got {fps}")
    if gop_slots < 1:
        raise RenderError("gop_slots must be at least 1")
    owner = gop_table(stream)
    for t in path.times:
        if not 0 <= t < stream.num_frames:
            raise RenderError(f"camera path asks for frame {t}, the stream has {stream.num_frames}")
    visits = gop_visits(path.times, owner)
    order = [g for g, _ in visits]
    if link is not None:
        renditions = link.renditions
    if renditions is not None and len(renditions) != len(order):
        raise RenderError(f"{len(renditions)} renditions given for {len(order)} GOP visits of the path")
    stop = stop or threading.Event()
    slots = GopSlots(gop_slots)
    q: queue.Queue = queue.Queue(maxsize=gop_slots)
    decoder = Decoder(stream, order, slots, q, stop, renderer.device, renditions)
    stats = PlaybackStats(target_fps=fps, device=str(renderer.device), width=path.cameras.width,
                          height=path.cameras.height, renditions=list(renditions) if renditions else None, link=link,
                          visit_seconds=[n / (fps or stream.fps) for _, n in visits])
    visit = -1  # index into visits of the GOP on screen
    render_s = output_s = 0.0
    current: Decoded | None = None
    bar = progress_bar(total=len(path), unit="frame", desc="play", disable=not progress, leave=False)

    def next_gop() -> Decoded:
        waited = 0.0
        while True:
            try:
                item = q.get(timeout=POLL_S)
                break
            except queue.Empty:
                waited += POLL_S
                if waited > timeout_s:
                    raise RenderError(f"no GOP decoded within {timeout_s:g} s")
                if not decoder.is_alive() and q.empty():
                    raise RenderError("the decode thread ended without a result")
        if isinstance(item, Failed):
            raise item.error
        if item is END:
            raise RenderError("the decode thread ran out of GOPs before the path ended")
        return item

    t_start = time.perf_counter()
    clock0: float | None = None  # when output frame 0's slot is (moved on by link stalls)
    started: float | None = None  # when playback began (wall_s counts from here, stalls included)
    decoder.start()
    try:
        for i, t in enumerate(path.times):
            if stop.is_set():
                raise RenderError("playback stopped")
            if current is None or not current.start <= t < current.start + len(current.frames):
                if current is not None:  # done with this GOP: free it before taking the next
                    current = None
                    slots.release()
                current = next_gop()
                visit += 1
                if current.gop != owner[t]:
                    raise RenderError(f"decoder delivered GOP {current.gop}, the path needs GOP {owner[t]}")
                if link is not None and fps is not None and clock0 is not None:
                    wait = link.fetches[visit].stall_s  # the simulated link had not delivered it yet
                    clock0 += wait  # the clock stops while the player waits (rebuffering), nothing is dropped
                    stats.stalled_s += wait
            if clock0 is None:  # the clock starts once the first GOP is there
                clock0 = time.perf_counter()
                if link is not None and fps is not None:  # and not before the simulated link delivered it
                    clock0 = max(clock0, t_start + link.startup_s)
                stats.startup_s = clock0 - t_start
                started = clock0
            if fps is not None:
                slot = clock0 + i / fps
                now = time.perf_counter()
                if now < slot:
                    time.sleep(slot - now)
                elif now > slot + 1.0 / fps:  # its whole slot has passed: drop it
                    stats.frames_dropped += 1
                    bar.update(1)
                    continue
            t0 = time.perf_counter()
            image = renderer.render(current.frames[t - current.start], path.cameras, i)
            synchronize(renderer.device)
            t1 = time.perf_counter()
            if on_frame is not None:
                on_frame(i, t, image)
            t2 = time.perf_counter()
            render_s += t1 - t0
            output_s += t2 - t1
            stats.frames_shown += 1
            bar.update(1)
    except BaseException as e:
        stop.set()
        _finish(stats, decoder, started, render_s, output_s)
        bar.close()
        # a decoder stuck inside decode_gop cannot be interrupted; it is a daemon thread and
        # exits at its next stop check, so do not wait on it for long
        decoder.join(timeout=1.0)
        if decoder.is_alive():
            log.warning("the decode thread is still busy; it stops after its current GOP")
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        kind = StreamError if isinstance(e, FormatError) else RenderError  # a malformed file: the stream is at fault
        msg = (f"playback stopped after {stats.frames_shown} frames shown "
               f"({stats.frames_dropped} dropped): {e}")
        err = PlaybackError(msg, stats) if kind is RenderError else PlaybackStreamError(msg, stats)
        if not isinstance(e, FeatvidError):
            log.debug("playback failure", exc_info=e)
        raise err from e
    stop.set()
    decoder.join(timeout=5.0)
    _finish(stats, decoder, started, render_s, output_s)
    bar.close()
    return stats


def _finish(stats: PlaybackStats, decoder: Decoder, clock0: float | None, render_s: float, output_s: float) -> None:
    stats.max_gops_alive = decoder.slots.max_taken
    stats.frames_decoded, stats.gops_decoded = decoder.frames, decoder.gops
    stats.decode_ms_per_frame = 1000.0 * decoder.seconds / decoder.frames if decoder.frames else 0.0
    n = stats.frames_shown
    stats.render_ms_per_frame = 1000.0 * render_s / n if n else 0.0
    stats.output_ms_per_frame = 1000.0 * output_s / n if n else 0.0
    stats.wall_s = time.perf_counter() - clock0 if clock0 is not None else 0.0
    stats.achieved_fps = n / stats.wall_s if stats.wall_s > 0 else 0.0
