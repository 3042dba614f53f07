"""Streaming playback: decode GOPs ahead on one thread, render them at the target rate on another.

- The decode thread walks the GOPs the camera path needs, in order, and hands each decoded GOP
  (a list of SparseGrids) to the renderer through a queue. Before decoding it takes one of
  `gop_slots` slots (default 2); the renderer gives a slot back when it is done with a GOP. So at
  most two GOPs are alive at any time - the one on screen and the next one, decoded or being
  decoded - whatever the stream's length.
- The render loop (the calling thread: it owns the GPU context and sees Ctrl-C) shows output
  frame i at start + i / fps. A frame whose slot has passed when its turn comes is dropped, not
  rendered late, so playback keeps time when rendering or decoding cannot; with `fps=None` it
  renders every frame as fast as it can (what `render_path_video` does).
- Every blocking queue/slot operation has a timeout and checks a stop Event, so an exception on
  either side stops both: a decode failure surfaces as a StreamError/RenderError saying how many
  frames were shown, and the frames shown so far have been passed to the callback.

Frames go to a callback `on_frame(i, t, image)` (image [H, W, 3] float32 in [0, 1], on the
render device); headless playback discards them, `--out` records them to an MP4.

Renditions (adaptive streaming): each GOP visit of the path may be decoded in its own rendition
(`renditions`). `play_stream(..., bandwidth=KBPS)` picks them over a simulated link
(featvid.render.abr: the same throughput rule as the web player, in the player's own clock) and
plays them; in real time the simulated startup and stalls are waited out (the clock stops, as a
browser's does while it rebuffers), and the stats report switches, stalls and time per rendition.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from tqdm import tqdm

from featvid.device import resolve_device
from featvid.errors import FeatvidError, RenderError, StreamError
from featvid.field.grid import SparseGrid
from featvid.field.volume import RenderSettings
from featvid.render.abr import MAX_BUFFER_S, AbrRule, Link, LinkReport, Visit, simulate
from featvid.render.fast import FastRenderer, FastSettings, synchronize
from featvid.render.paths import CameraPath, make_path

log = logging.getLogger(__name__)

FrameCallback = Callable[[int, int, torch.Tensor], None]
_POLL_S = 0.05  # how often a blocked thread looks at the stop Event


class StreamLike(Protocol):
    """What the player needs from a decoded stream (featvid.codecs.open_stream returns one)."""

    num_frames: int
    fps: float
    num_gops: int

    @property
    def aabb(self) -> torch.Tensor: ...

    @property
    def render_settings(self) -> RenderSettings: ...

    def gop_range(self, g: int) -> tuple[int, int]: ...

    def decode_gop(self, g: int, device: Any = "cpu") -> list[SparseGrid]: ...

    def mlp(self, device: Any) -> torch.nn.Module: ...


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


@dataclass
class _Decoded:
    gop: int
    start: int
    frames: list[SparseGrid]
    seconds: float


@dataclass
class _Failed:
    error: BaseException


_END = object()


def gop_table(stream: StreamLike) -> list[int]:
    """GOP index of every stream frame t (checks that the GOPs tile 0..T-1)."""
    owner = [-1] * stream.num_frames
    for g in range(stream.num_gops):
        a, b = stream.gop_range(g)
        for t in range(a, b):
            if not 0 <= t < stream.num_frames:
                raise StreamError(f"GOP {g} covers frame {t}, outside 0..{stream.num_frames - 1}")
            owner[t] = g
    if -1 in owner:
        raise StreamError(f"stream frame {owner.index(-1)} is in no GOP")
    return owner


def gop_visits(times: list[int], owner: list[int]) -> list[tuple[int, int]]:
    """(GOP, output frames) of each stretch of a path inside one GOP, in order."""
    visits: list[tuple[int, int]] = []
    for t in times:
        g = owner[t]
        if visits and visits[-1][0] == g:
            visits[-1] = (g, visits[-1][1] + 1)
        else:
            visits.append((g, 1))
    return visits


def gop_order(times: list[int], owner: list[int]) -> list[int]:
    """The GOPs a path visits, in order, a repeat collapsed: times 0..T-1 twice -> 0..G-1 twice."""
    return [g for g, _ in gop_visits(times, owner)]


class _Slots:
    """A counting semaphore of GOP slots that also records the most slots ever taken at once."""

    def __init__(self, n: int) -> None:
        self._sem = threading.Semaphore(n)
        self._lock = threading.Lock()
        self.taken = 0
        self.max_taken = 0

    def acquire(self, timeout: float) -> bool:
        if not self._sem.acquire(timeout=timeout):
            return False
        with self._lock:
            self.taken += 1
            self.max_taken = max(self.max_taken, self.taken)
        return True

    def release(self) -> None:
        with self._lock:
            self.taken -= 1
        self._sem.release()


class _Decoder(threading.Thread):
    """Decodes the GOPs of `order` into `out`, taking one slot per GOP before decoding it."""

    def __init__(self, stream: StreamLike, order: list[int], slots: _Slots, out: queue.Queue,
                 stop: threading.Event, device: torch.device, renditions: list[str] | None = None) -> None:
        super().__init__(name="featvid-decode", daemon=True)
        self.stream, self.order, self.slots, self.out, self.stop = stream, order, slots, out, stop
        self.renditions = renditions  # per visit of `order`, or None: the stream's main rendition
        self.device = device  # GOPs are dequantized where they are rendered
        self.seconds = 0.0
        self.frames = 0
        self.gops = 0

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for k, g in enumerate(self.order):
                while not self.slots.acquire(timeout=_POLL_S):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    return
                start, end = self.stream.gop_range(g)
                t0 = time.perf_counter()
                if self.renditions is None:
                    frames = self.stream.decode_gop(g, self.device)
                else:
                    frames = self.stream.decode_gop(g, self.device, rendition=self.renditions[k])  # type: ignore[call-arg]
                synchronize(self.device)
                dt = time.perf_counter() - t0
                if len(frames) != end - start:
                    raise StreamError(f"GOP {g} decoded {len(frames)} frames, expected {end - start}")
                self.seconds += dt
                self.frames += len(frames)
                self.gops += 1
                if not self._put(_Decoded(g, start, frames, dt)):
                    return
                del frames
            self._put(_END)
        except BaseException as e:  # hand any failure to the render side, which raises it
            self._put(_Failed(e))


def play(stream: StreamLike, path: CameraPath, renderer: FastRenderer, fps: float | None = 30.0,
         on_frame: FrameCallback | None = None, gop_slots: int = 2, progress: bool = False,
         stop: threading.Event | None = None, timeout_s: float = 600.0,
         renditions: list[str] | None = None, link: LinkReport | None = None) -> PlaybackStats:
    """Play `path` through `stream`: decode ahead, render at `fps` (None: every frame, unthrottled).

    renditions: the rendition of each GOP visit of the path (`gop_visits`), default the stream's
    main one; link: a simulated link's report (featvid.render.abr.simulate over these visits): its
    renditions are played, and at a target fps its startup and stalls are waited out.

    Returns PlaybackStats; raises PlaybackError (a RenderError, with `.stats`) when decoding or
    rendering fails, after the frames shown so far went to `on_frame`. `timeout_s` bounds the wait
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
    slots = _Slots(gop_slots)
    q: queue.Queue = queue.Queue(maxsize=gop_slots)
    decoder = _Decoder(stream, order, slots, q, stop, renderer.device, renditions)
    stats = PlaybackStats(target_fps=fps, device=str(renderer.device), width=path.cameras.width,
                          height=path.cameras.height, renditions=list(renditions) if renditions else None, link=link,
                          visit_seconds=[n / (fps or stream.fps) for _, n in visits])
    visit = -1  # index into visits of the GOP on screen
    render_s = output_s = 0.0
    current: _Decoded | None = None
    bar = tqdm(total=len(path), unit="frame", desc="play", disable=not progress, leave=False)

    def next_gop() -> _Decoded:
        waited = 0.0
        while True:
            try:
                item = q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                waited += _POLL_S
                if waited > timeout_s:
                    raise RenderError(f"no GOP decoded within {timeout_s:g} s")
                if not decoder.is_alive() and q.empty():
                    raise RenderError("the decode thread ended without a result")
        if isinstance(item, _Failed):
            raise item.error
        if item is _END:
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
        kind = StreamError if isinstance(e, StreamError) else RenderError
        msg = (f"playback stopped after {stats.frames_shown} frames shown "
               f"({stats.frames_dropped} dropped): {e}")
        err = PlaybackError(msg, stats) if kind is RenderError else _PlaybackStreamError(msg, stats)
        if not isinstance(e, FeatvidError):
            log.debug("playback failure", exc_info=e)
        raise err from e
    stop.set()
    decoder.join(timeout=5.0)
    _finish(stats, decoder, started, render_s, output_s)
    bar.close()
    return stats


class _PlaybackStreamError(StreamError):
    """A stream that failed mid-playback; `stats` holds what was shown until then."""

    def __init__(self, message: str, stats: PlaybackStats) -> None:
        super().__init__(message)
        self.stats = stats


def _finish(stats: PlaybackStats, decoder: _Decoder, clock0: float | None, render_s: float, output_s: float) -> None:
    stats.max_gops_alive = decoder.slots.max_taken
    stats.frames_decoded, stats.gops_decoded = decoder.frames, decoder.gops
    stats.decode_ms_per_frame = 1000.0 * decoder.seconds / decoder.frames if decoder.frames else 0.0
    n = stats.frames_shown
    stats.render_ms_per_frame = 1000.0 * render_s / n if n else 0.0
    stats.output_ms_per_frame = 1000.0 * output_s / n if n else 0.0
    stats.wall_s = time.perf_counter() - clock0 if clock0 is not None else 0.0
    stats.achieved_fps = n / stats.wall_s if stats.wall_s > 0 else 0.0


# ---- the entry points the CLI and the demo call ------------------------------------------------

def _open(stream: Any, hwaccel: str) -> StreamLike:
    if isinstance(stream, (str, Path)):
        from featvid.codecs import open_stream

        return open_stream(stream, hwaccel=hwaccel)
    return stream


def _path_for(stream: StreamLike, path: str | CameraPath, frames: int | None, size: tuple[int, int] | None,
              data: Any) -> CameraPath:
    if isinstance(path, CameraPath):
        return path.resized(*size) if size is not None else path
    dataset = None
    if path == "test":
        if data is None:
            raise RenderError("--path test needs the dataset (--data DATASET)")
        if isinstance(data, (str, Path)):
            from featvid.data import load_dataset

            dataset = load_dataset(data)
        else:
            dataset = data
    return make_path(path, stream.num_frames, stream.aabb, frames, size, dataset)


def render_path_video(stream: Any, path: str | CameraPath, out: str | Path, size: tuple[int, int] | None = None,
                      device: str | torch.device = "auto", frames: int | None = None, fps: float | None = None,
                      data: Any = None, hwaccel: str = "auto", progress: bool = True,
                      fast: FastSettings = FastSettings()) -> PlaybackStats:
    """Render a camera path through a stream (a .fvv folder or an opened stream) to an H.264 MP4.

    path: orbit, spiral, test (needs `data`, a dataset folder or MultiViewVideo) or a .json path
    file, or a CameraPath. size: (width, height) pixels. frames: output frames (default: the
    stream's frame count, or the path file's). fps: of the MP4 (default: the stream's). Every
    frame is rendered (nothing dropped); the stats' achieved_fps is the rendering rate.
    """
    from featvid.render.video import Mp4Writer

    s = _open(stream, hwaccel)
    cam_path = _path_for(s, path, frames, size, data)
    renderer = FastRenderer(s.mlp("cpu"), s.render_settings, device, fast)
    w, h = cam_path.size
    with Mp4Writer(out, fps or s.fps, w, h) as writer:
        stats = play(s, cam_path, renderer, fps=None, on_frame=lambda i, t, img: writer.write(img),
                     progress=progress)
    return stats


def link_visits(stream: Any, times: list[int], fps: float) -> list[Visit]:
    """The GOP visits of a path's frame times as the link simulation fetches them: play time at
    `fps`, each rendition's bits (video + mapping, from the manifest) and which are on disk."""
    return [Visit(g, n / fps, {r: 8.0 * stream.gop_bytes(g, r) for r in stream.renditions}, tuple(stream.available(g)))
            for g, n in gop_visits(times, gop_table(stream))]


def by_bitrate(stream: Any) -> list[str]:
    """The stream's rendition names, lowest average bitrate first (the ABR rule's order)."""
    return [r.name for r in sorted(stream.manifest.renditions, key=lambda r: r.average_bps)]


def choose_renditions(stream: Any, times: list[int], fps: float, bandwidth: float | None = None,
                      rendition: str | None = None, latency_s: float = 0.0,
                      max_buffer_s: float = MAX_BUFFER_S, rule: AbrRule = AbrRule()
                      ) -> tuple[list[str] | None, LinkReport | None, list[str]]:
    """What each GOP visit of a path plays: (renditions or None for the main one, the simulated
    link's report or None, fallback notes). bandwidth: kbit/s of a simulated link (the ABR rule
    picks, or `rendition` is forced over it); rendition alone: that one everywhere, a GOP where
    its video is missing falling back to the nearest one."""
    if bandwidth is None and rendition is None:
        return None, None, []
    if not hasattr(stream, "renditions"):
        raise RenderError("this stream object has no renditions to choose from")
    if rendition is not None:
        stream.manifest.rendition(rendition)  # StreamError naming the stream's renditions
    if bandwidth is not None:
        report = simulate(link_visits(stream, times, fps), by_bitrate(stream), Link(bandwidth, latency_s), rule,
                          max_buffer_s, forced=rendition)
        notes = [f"GOP {f.gop}: rendition {f.wanted} is missing, played {f.rendition} instead" for f in report.fallbacks]
        return report.renditions, report, sorted(set(notes), key=notes.index)
    chosen, notes = [], []
    for g, _ in gop_visits(times, gop_table(stream)):
        name, fell_back = stream.resolve_rendition(g, rendition)
        chosen.append(name)
        note = f"GOP {g}: rendition {rendition} is missing, played {name} instead"
        if fell_back and note not in notes:
            log.warning("%s", note)
            notes.append(note)
    return chosen, None, notes


def play_stream(stream: Any, path: str | CameraPath = "orbit", fps: float | None = None,
                size: tuple[int, int] | None = (512, 512), device: str | torch.device = "auto",
                hwaccel: str = "auto", frames: int | None = None, duration: float | None = None,
                out: str | Path | None = None, data: Any = None, progress: bool = True,
                fast: FastSettings = FastSettings(), bandwidth: float | None = None,
                rendition: str | None = None, latency_s: float = 0.0,
                max_buffer_s: float = MAX_BUFFER_S) -> PlaybackStats:
    """Headless real-time playback of a stream along a camera path at `fps` (default: the stream's).

    Length: `frames`, or `duration` seconds, or one pass through the stream. Frames are dropped
    when late. `out`: also record the shown frames to an MP4 (at the target rate; dropped frames
    are left out). On a failure mid-stream the recording keeps what was shown and the error is
    raised after it is written.

    bandwidth: simulate a link of this many kbit/s (with `latency_s` per request and a buffer of
    `max_buffer_s` seconds): the ABR rule picks each GOP's rendition, the startup and stalls are
    waited out, and the stats' `link` reports switches, stalls and time per rendition.
    rendition: play this one (over the link, when a bandwidth is given).
    """
    from featvid.render.video import Mp4Writer

    s = _open(stream, hwaccel)
    rate = float(fps or s.fps)
    if not rate > 0:
        raise RenderError(f"fps must be positive, got {rate}")
    if duration is not None:
        if not duration > 0:
            raise RenderError(f"--duration must be positive, got {duration}")
        frames = max(1, round(duration * rate))
    cam_path = _path_for(s, path, frames, size, data)
    renditions, link, notes = choose_renditions(s, cam_path.times, rate, bandwidth, rendition, latency_s, max_buffer_s)
    renderer = FastRenderer(s.mlp("cpu"), s.render_settings, device, fast)

    def run(on_frame: FrameCallback | None) -> PlaybackStats:
        stats = play(s, cam_path, renderer, fps=rate, on_frame=on_frame, progress=progress, renditions=renditions,
                     link=link)
        stats.fallbacks = notes
        return stats

    if out is None:
        return run(None)
    w, h = cam_path.size
    writer = Mp4Writer(out, rate, w, h)
    try:
        stats = run(lambda i, t, img: writer.write(img))
    except (PlaybackError, _PlaybackStreamError) as e:
        if e.stats.frames_shown:
            writer.close()  # keep the recording of what was shown
        else:
            writer.abort()
        raise
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return stats


@dataclass
class DecodeStats:
    """What a decode-only pass achieved: every frame of every GOP decoded to dequantized vertex
    values on `device`, nothing rendered. Times in milliseconds per stream frame."""

    frames: int  # stream frames decoded, all passes together
    passes: int  # whole passes over the stream
    seconds: float  # wall time of the timed passes
    device: str
    hwaccel: str
    stream_fps: float  # the stream's own frame rate

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / self.frames if self.frames else 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def x_real_time(self) -> float:
        return self.fps / self.stream_fps if self.stream_fps > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "ms_per_frame": self.ms_per_frame, "fps": self.fps, "x_real_time": self.x_real_time}

    def summary(self) -> str:
        return (f"decoded {self.frames} frames ({self.passes} pass{'es' if self.passes != 1 else ''}) on {self.device}, "
                f"hwaccel {self.hwaccel}: {self.ms_per_frame:.2f} ms/frame, {self.fps:.0f} fps "
                f"({self.x_real_time:.1f}x real time)")


def decode_only(stream: Any, device: str | torch.device = "auto", hwaccel: str = "auto", min_seconds: float = 0.0,
                warmup: bool = True, progress: bool = False) -> DecodeStats:
    """Decode every GOP of `stream` (a .fvv folder or an opened stream) to dequantized vertex values
    on `device`, as playback does, and render nothing: the decoder's speed on its own.

    warmup: one untimed pass first (codec start-up, mapping tables). min_seconds: repeat whole
    passes until this much time has gone by (a short stream decodes in a fraction of a second)."""
    dev = resolve_device(device)
    s = _open(stream, hwaccel)
    if warmup:
        for g in range(s.num_gops):
            s.decode_gop(g, dev)
        synchronize(dev)
    frames = passes = 0
    bar = tqdm(unit="frame", desc="decode", disable=not progress, leave=False)
    t0 = time.perf_counter()
    while passes == 0 or time.perf_counter() - t0 < min_seconds:
        for g in range(s.num_gops):
            n = len(s.decode_gop(g, dev))
            frames += n
            bar.update(n)
        passes += 1
    synchronize(dev)
    seconds = time.perf_counter() - t0
    bar.close()
    return DecodeStats(frames, passes, seconds, str(dev), getattr(s, "hwaccel", "none"), float(s.fps))
