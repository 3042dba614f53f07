"""Adaptive streaming: which rendition of the next GOP to fetch (`AbrRule`), and a simulated link
to fetch it over (`Link`, `simulate`).

The rule is a standard throughput rule with a safety factor, guarded by the buffer, the same in
the web player (featvid/render/web/abr.js) and here:

- throughput estimate: the harmonic mean of the last `window` (3) measured fetch throughputs
  (bits of a GOP's files over the seconds from request to last byte). The rate-based rule of
  FESTIVE and of MPC's baseline: a harmonic mean is pulled down by one slow fetch at once and is
  not fooled by one fast one.
- sustainable: the highest rendition whose next GOP (video + mapping, sizes from the manifest)
  fits in `safety` (0.9, dash.js's default) x estimate x the GOP's play time.
- buffer guard (dash.js's InsufficientBufferRule): and whose fetch at the last measured
  throughput ends before the buffer runs dry (bits / (safety x last) <= buffer seconds); after a
  sudden drop the estimate still remembers faster fetches, the guard does not.
- nothing measured yet: the lowest rendition (start fast, then climb).

The link simulation runs in the player's own clock, deterministically (no sleeping, no CPU
speed in it): one fetch at a time, each GOP visit of the camera path fetched again (a loop
re-fetches, as the web player does), the next fetch started once the buffer holds less than
`max_buffer_s` with it; playback starts when the first GOP is in, and stalls (the clock stops)
when the next GOP is not in when it is due.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from featvid.errors import ConfigError

SAFETY = 0.9  # share of the estimated throughput the rule plans to use
WINDOW = 3  # throughput samples in the estimate
MAX_BUFFER_S = 2.0  # seconds of content fetched ahead at most: a small buffer


@dataclass(frozen=True)
class AbrRule:
    """Throughput rule with a safety factor and a buffer guard (see the module docstring)."""

    safety: float = SAFETY
    window: int = WINDOW

    def __post_init__(self) -> None:
        if not 0 < self.safety <= 1 or self.window < 1:
            raise ConfigError(f"ABR rule needs 0 < safety <= 1 and window >= 1, got {self.safety}, {self.window}")

    def estimate(self, samples: Sequence[float]) -> float | None:
        """Harmonic mean of the last `window` throughput samples (bit/s), None without any."""
        last = [s for s in samples[-self.window:] if s > 0]
        if not last:
            return None
        return len(last) / sum(1.0 / s for s in last)

    def choose(self, bits: Sequence[float], duration_s: float, buffer_s: float, samples: Sequence[float]) -> int:
        """Index into `bits` (the next GOP's bits in each rendition, lowest bitrate first) of the
        rendition to fetch. duration_s: that GOP's play time; buffer_s: content fetched ahead of
        the playhead; samples: measured throughputs so far (bit/s), oldest first."""
        est = self.estimate(samples)
        if est is None:
            return 0
        last = samples[-1]
        pick = 0
        for i, b in enumerate(bits):
            sustainable = b <= self.safety * est * duration_s
            in_time = b <= self.safety * last * buffer_s
            if sustainable and in_time:
                pick = i
        return pick


@dataclass(frozen=True)
class Link:
    """A simulated network link: `kbps` (1000 bit/s) from time 0, then each (at_s, kbps) of
    `steps` from that time on; `latency_s` before the first byte of every request."""

    kbps: float
    latency_s: float = 0.0
    steps: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        rates = [self.kbps] + [k for _, k in self.steps]
        if not all(math.isfinite(k) and k > 0 for k in rates):
            raise ConfigError(f"a link rate must be a positive number of kbit/s, got {rates}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ConfigError(f"link latency must be >= 0 s, got {self.latency_s}")
        times = [t for t, _ in self.steps]
        if times != sorted(times) or any(t < 0 for t in times):
            raise ConfigError("link steps must be at increasing times >= 0")

    def rate_at(self, t: float) -> float:
        """bit/s at time t."""
        kbps = self.kbps
        for at, k in self.steps:
            if t >= at:
                kbps = k
        return 1000.0 * kbps

    def transfer_end(self, start: float, bits: float) -> float:
        """When a request made at `start` has its last byte, `bits` later at the link's rates."""
        t = start + self.latency_s
        left = bits
        changes = [at for at, _ in self.steps if at > t]
        for change in changes:
            rate = self.rate_at(t)
            if left <= rate * (change - t):
                break
            left -= rate * (change - t)
            t = change
        return t + left / self.rate_at(t)


@dataclass(frozen=True)
class Visit:
    """One stretch of playback inside one GOP: what the link fetches once."""

    gop: int
    duration_s: float  # play time of the stretch
    bits: dict[str, float]  # rendition -> bits to fetch (video + mapping)
    available: tuple[str, ...]  # renditions whose files are there (a hole is missing)


@dataclass
class Fetch:
    """One simulated GOP fetch and its playback. Times in seconds from the start of the session."""

    visit: int
    gop: int
    rendition: str
    wanted: str  # what the rule (or --rendition) asked for; differs after a hole's fallback
    bits: float
    request_s: float
    done_s: float
    buffer_s: float  # content fetched ahead of the playhead when it was requested
    play_s: float = 0.0  # when its playback began
    stall_s: float = 0.0  # playback stopped for this long before it, waiting for it (0 for the first)

    @property
    def throughput_bps(self) -> float:
        return self.bits / max(self.done_s - self.request_s, 1e-9)


@dataclass
class LinkReport:
    """What a session over a link did: each fetch, stalls, switches and time in each rendition."""

    kbps: float
    forced: str | None
    fetches: list[Fetch] = field(default_factory=list)

    @property
    def startup_s(self) -> float:
        """From the first request to the first frame."""
        return self.fetches[0].play_s if self.fetches else 0.0

    @property
    def stalls(self) -> list[float]:
        """Each stall after playback began, seconds."""
        return [f.stall_s for f in self.fetches if f.stall_s > 0]

    @property
    def stall_s(self) -> float:
        return sum(self.stalls)

    @property
    def switches(self) -> int:
        """Changes of rendition between consecutive GOP visits."""
        return sum(1 for a, b in zip(self.fetches, self.fetches[1:]) if a.rendition != b.rendition)

    @property
    def fallbacks(self) -> list[Fetch]:
        """Fetches that played another rendition than wanted, because the wanted one was missing."""
        return [f for f in self.fetches if f.rendition != f.wanted]

    def seconds_in(self, durations: Sequence[float]) -> dict[str, float]:
        """Play time in each rendition, given each visit's duration."""
        out: dict[str, float] = {}
        for f in self.fetches:
            out[f.rendition] = out.get(f.rendition, 0.0) + durations[f.visit]
        return out

    @property
    def renditions(self) -> list[str]:
        """The rendition played at each visit."""
        return [f.rendition for f in self.fetches]

    def to_dict(self, durations: Sequence[float]) -> dict:
        return {"kbps": self.kbps, "forced": self.forced, "startup_s": self.startup_s, "stall_s": self.stall_s,
                "stalls": len(self.stalls), "longest_stall_s": max(self.stalls, default=0.0),
                "switches": self.switches, "seconds_in": self.seconds_in(durations),
                "fallbacks": [{"visit": f.visit, "gop": f.gop, "wanted": f.wanted, "played": f.rendition}
                              for f in self.fallbacks],
                "fetches": [{**asdict(f), "throughput_bps": f.throughput_bps} for f in self.fetches]}

    def summary(self, durations: Sequence[float]) -> str:
        """A few human lines for the CLI."""
        spent = ", ".join(f"{n} {s:.2f} s" for n, s in sorted(self.seconds_in(durations).items(), key=lambda x: -x[1]))
        how = f"rendition {self.forced} forced" if self.forced else "adaptive"
        lines = [f"link {self.kbps:g} kbit/s ({how}): startup {self.startup_s:.2f} s, {len(self.stalls)} stall(s) "
                 f"{self.stall_s:.2f} s in all (longest {max(self.stalls, default=0.0):.2f} s), "
                 f"{self.switches} rendition switch(es)", f"time in each rendition: {spent}"]
        for f in self.fallbacks:
            lines.append(f"GOP {f.gop}: rendition {f.wanted} is missing, played {f.rendition} instead")
        return "\n".join(lines)


def fallback(wanted: str, available: Sequence[str], order: Sequence[str]) -> str:
    """`wanted` if available, else the nearest available rendition in `order` (lowest bitrate
    first), the next lower one first."""
    if wanted in available:
        return wanted
    i = order.index(wanted)
    lower = [n for n in order[:i][::-1] if n in available]
    higher = [n for n in order[i + 1:] if n in available]
    return (lower or higher)[0]


def simulate(visits: Sequence[Visit], order: Sequence[str], link: Link, rule: AbrRule = AbrRule(),
             max_buffer_s: float = MAX_BUFFER_S, forced: str | None = None) -> LinkReport:
    """Play `visits` over `link`: per visit, the rule's choice among `order` (rendition names,
    lowest bitrate first) or `forced`, a hole's fallback, the fetch, the playback and its stalls."""
    if not visits:
        raise ConfigError("nothing to play")
    if forced is not None and forced not in order:
        raise ConfigError(f"no rendition {forced!r}; the stream has {', '.join(order)}")
    if not max_buffer_s > 0:
        raise ConfigError(f"the buffer must hold more than 0 s, got {max_buffer_s}")
    report = LinkReport(link.kbps, forced)
    samples: list[float] = []
    fetched_s = 0.0  # content fetched before this visit
    done = 0.0  # when the previous fetch ended
    for k, v in enumerate(visits):
        # wait until the buffer has room for this GOP: played(t) >= fetched + D - max_buffer
        target = min(fetched_s, fetched_s + v.duration_s - max_buffer_s)
        request = max(done, _time_played(report.fetches, visits, target)) if target > 0 else done
        buffer = fetched_s - _played(report.fetches, visits, request) if k else 0.0
        bits = [v.bits[n] for n in order]
        wanted = forced if forced is not None else order[rule.choose(bits, v.duration_s, buffer, samples)]
        name = fallback(wanted, v.available, order)
        f = Fetch(k, v.gop, name, wanted, v.bits[name], request, link.transfer_end(request, v.bits[name]), buffer)
        samples.append(f.throughput_bps)
        if k == 0:
            f.play_s = f.done_s
        else:
            prev = report.fetches[-1]
            due = prev.play_s + visits[k - 1].duration_s
            f.play_s = max(due, f.done_s)
            f.stall_s = f.play_s - due
        report.fetches.append(f)
        fetched_s += v.duration_s
        done = f.done_s
    return report


def _played(fetches: Sequence[Fetch], visits: Sequence[Visit], t: float) -> float:
    """Seconds of content played by time t."""
    return sum(min(max(t - f.play_s, 0.0), visits[f.visit].duration_s) for f in fetches)


def _time_played(fetches: Sequence[Fetch], visits: Sequence[Visit], target: float) -> float:
    """When `target` seconds of content have been played (the fetches play back to back, with stalls)."""
    played = 0.0
    for f in fetches:
        d = visits[f.visit].duration_s
        if target <= played + d:
            return f.play_s + (target - played)
        played += d
    last = fetches[-1]
    return last.play_s + visits[last.visit].duration_s
