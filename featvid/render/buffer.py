"""The player's decode-ahead buffer: a thread that decodes the GOPs a path visits, in order, into a
queue, holding at most `slots` decoded GOPs at once.

Before decoding a GOP the decoder takes a slot (`GopSlots`); the render loop gives it back when it
is done with that GOP. With 2 slots only the GOP on screen and the next one are alive, whatever
the stream's length. Every blocking wait has a timeout and looks at a stop Event, so either side
can stop the other; a decode failure travels through the queue as `Failed` and the render side
raises it.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import torch

from featvid.errors import StreamError
from featvid.field.grid import SparseGrid
from featvid.render.fast import synchronize
from featvid.render.source import PlayableStream

POLL_S = 0.05  # how often a blocked thread looks at the stop Event


@dataclass
class Decoded:
    """One decoded GOP visit: GOP g, its first stream frame, its frames' grids, decode seconds."""

    gop: int
    start: int
    frames: list[SparseGrid]
    seconds: float


@dataclass
class Failed:
    """The decoder's failure, handed to the render side to raise."""

    error: BaseException


END = object()  # the decoder went through every visit


class GopSlots:
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


class Decoder(threading.Thread):
    """Decodes the GOPs of `order` into `out`, taking one slot per GOP before decoding it."""

    def __init__(self, stream: PlayableStream, order: list[int], slots: GopSlots, out: queue.Queue,
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
                self.out.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, k: int, g: int) -> list[SparseGrid]:
        if self.renditions is None:  # the main rendition: the decode a single-rendition stream knows
            return self.stream.decode_gop(g, self.device)
        return self.stream.decode_gop(g, self.device, rendition=self.renditions[k])

    def run(self) -> None:
        try:
            for k, g in enumerate(self.order):
                while not self.slots.acquire(timeout=POLL_S):
                    if self.stop.is_set():
                        return
                if self.stop.is_set():
                    return
                start, end = self.stream.gop_range(g)
                t0 = time.perf_counter()
                frames = self._decode(k, g)
                synchronize(self.device)
                dt = time.perf_counter() - t0
                if len(frames) != end - start:
                    raise StreamError(f"GOP {g} decoded {len(frames)} frames, expected {end - start}")
                self.seconds += dt
                self.frames += len(frames)
                self.gops += 1
                if not self._put(Decoded(g, start, frames, dt)):
                    return
                del frames
            self._put(END)
        except BaseException as e:  # hand any failure to the render side, which raises it
            self._put(Failed(e))
