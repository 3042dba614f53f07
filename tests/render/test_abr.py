"""Adaptive streaming in the Python player: the ABR rule, the simulated link, mixed-rendition
playback of a ladder, `featvid play --bandwidth / --rendition`."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
from click.testing import CliRunner

from featvid.cli import main
from featvid.codecs import open_stream
from featvid.errors import ConfigError, StreamError
from featvid.render.abr import AbrRule, Link, Visit, fallback, simulate
from featvid.render.fast import FastRenderer
from featvid.render.paths import make_path, orbit
from featvid.render.gops import gop_table, gop_visits
from featvid.render.playback import play_stream
from featvid.render.player import play
from featvid.render.renditions import by_bitrate, choose_renditions, link_visits
from tests.render.conftest import LADDER


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


# ---- the rule ----------------------------------------------------------------------------------

def test_rule_starts_low_then_takes_the_highest_sustainable_rendition():
    rule = AbrRule()
    bits = [100e3, 200e3, 300e3]
    assert rule.choose(bits, 0.5, 2.0, []) == 0  # nothing measured: the lowest
    assert rule.choose(bits, 0.5, 2.0, [1e6]) == 2  # 0.9 * 1 Mbit/s * 0.5 s = 450 kbit fit all
    assert rule.choose(bits, 0.5, 2.0, [500e3]) == 1  # 225 kbit: the middle one
    assert rule.choose(bits, 0.5, 2.0, [100e3]) == 0  # nothing fits: still the lowest
    # harmonic mean of the last 3: one slow fetch pulls it down at once
    assert rule.estimate([5e6, 1e6, 1e6, 250e3]) == pytest.approx(3 / (1 / 1e6 + 1 / 1e6 + 1 / 250e3))
    assert rule.estimate([]) is None


def test_buffer_guard_steps_down_when_the_buffer_is_short():
    rule = AbrRule()
    bits = [100e3, 200e3, 300e3]
    assert rule.choose(bits, 0.5, 2.0, [2e6] * 3) == 2
    assert rule.choose(bits, 0.5, 0.1, [2e6] * 3) == 0  # 0.9 * 2 Mbit/s * 0.1 s = 180 kbit before it runs dry
    assert rule.choose(bits, 0.5, 0.0, [2e6] * 3) == 0  # empty buffer: the lowest
    with pytest.raises(ConfigError):
        AbrRule(safety=1.5)


def test_link_rates_latency_and_steps():
    link = Link(1000, latency_s=0.1, steps=((1.0, 500),))
    assert link.transfer_end(0.0, 1e6) == pytest.approx(1.2)  # 0.1 s latency, 0.9 s at 1 Mbit/s, 0.2 s at 0.5
    assert link.transfer_end(2.0, 1e5) == pytest.approx(2.3)
    with pytest.raises(ConfigError):
        Link(0)
    with pytest.raises(ConfigError):
        Link(100, steps=((2.0, 10), (1.0, 20)))


# ---- the link simulation -------------------------------------------------------------------------

def _visits(n: int, lo: float = 100e3, hi: float = 400e3, d: float = 0.5, holes: dict | None = None) -> list[Visit]:
    holes = holes or {}
    return [Visit(k % 3, d, {"lo": lo, "hi": hi}, tuple(r for r in ("lo", "hi") if r not in holes.get(k, ())))
            for k in range(n)]


def test_simulation_by_hand():
    """Three 0.5 s GOPs, 100 / 400 kbit, at 1 Mbit/s: low first (0.1 s), then high (0.4 s each),
    played back to back with no stall; the fetch of GOP 2 waits for nothing (the buffer is 10 s)."""
    r = simulate(_visits(3), ["lo", "hi"], Link(1000), max_buffer_s=10)
    assert r.renditions == ["lo", "hi", "hi"]
    assert [f.request_s for f in r.fetches] == pytest.approx([0.0, 0.1, 0.5])
    assert [f.done_s for f in r.fetches] == pytest.approx([0.1, 0.5, 0.9])
    assert [f.play_s for f in r.fetches] == pytest.approx([0.1, 0.6, 1.1])
    assert [f.buffer_s for f in r.fetches] == pytest.approx([0.0, 0.5, 0.6])
    assert r.startup_s == pytest.approx(0.1) and r.stall_s == 0 and r.switches == 1
    assert r.seconds_in([0.5] * 3) == pytest.approx({"lo": 0.5, "hi": 1.0})
    # a link below the lowest rendition (100 kbit per 0.5 s needs 200 kbit/s): 0.5 s stalls
    slow = simulate(_visits(3), ["lo", "hi"], Link(100), max_buffer_s=10)
    assert slow.renditions == ["lo"] * 3 and slow.stalls == pytest.approx([0.5, 0.5]) and slow.startup_s == pytest.approx(1)


def test_the_buffer_is_small_and_bounded():
    r = simulate(_visits(40, lo=10e3, hi=20e3, d=0.25), ["lo", "hi"], Link(10_000), max_buffer_s=1.0)
    for f in r.fetches[1:]:  # never more than 1 s of content ahead, with the fetched GOP
        assert f.buffer_s + 0.25 <= 1.0 + 1e-9
    assert max(f.buffer_s for f in r.fetches) == pytest.approx(0.75)


def test_steps_down_on_a_drop_and_up_again_without_a_long_stall():
    # 0.25 s GOPs of 30 / 60 / 120 kbit (120 / 240 / 480 kbit/s); the link drops from 2 Mbit/s to
    # 200 kbit/s for 6 s, then returns
    visits = [Visit(k % 4, 0.25, {"a": 30e3, "b": 60e3, "c": 120e3}, ("a", "b", "c")) for k in range(80)]
    link = Link(2000, steps=((5.0, 200), (11.0, 2000)))
    r = simulate(visits, ["a", "b", "c"], link)
    during = [f.rendition for f in r.fetches if 6.0 <= f.request_s < 11.0]
    after = [f.rendition for f in r.fetches if f.request_s >= 12.0]
    before = [f.rendition for f in r.fetches if 1.0 <= f.request_s < 5.0]
    assert set(before) == {"c"} and set(during) == {"a"} and set(after) == {"c"}
    assert max(r.stalls, default=0.0) <= 0.25  # no stall longer than one GOP (measured: none)
    forced = simulate(visits, ["a", "b", "c"], link, forced="c")  # no ABR: the drop stalls
    assert forced.stall_s > 1.5 and set(forced.renditions) == {"c"}  # measured 1.95 s


def test_a_hole_falls_back_and_is_reported():
    assert fallback("b", ("a", "c"), ["a", "b", "c"]) == "a"
    assert fallback("a", ("b", "c"), ["a", "b", "c"]) == "b"
    r = simulate(_visits(4, holes={2: ("hi",)}), ["lo", "hi"], Link(10_000), max_buffer_s=10)
    assert r.renditions == ["lo", "hi", "lo", "hi"]
    (f,) = r.fallbacks
    assert (f.gop, f.wanted, f.rendition) == (2, "hi", "lo")
    assert "GOP 2: rendition hi is missing, played lo instead" in r.summary([0.5] * 4)
    with pytest.raises(ConfigError, match="no rendition"):
        simulate(_visits(2), ["lo", "hi"], Link(100), forced="nope")


# ---- the player on a real ladder -------------------------------------------------------------------

def test_mixed_rendition_playback_renders_each_frame_as_its_own_rendition(ladder_stream):
    """GOPs decoded in changing renditions (each from its own keyframe) render every frame as
    that rendition's own decode does: measured identical (PSNR capped at 120 dB); the floor is 60."""
    s = open_stream(ladder_stream, hwaccel="none")
    renderer = FastRenderer(s.mlp(), s.render_settings, "cpu")
    path = orbit(s.aabb, 2 * s.num_frames, s.num_frames, 24, 24)  # two loops: each GOP visited twice
    visits = gop_visits(path.times, gop_table(s))
    assert len(visits) == 2 * s.num_gops >= 4
    cycle = ["web", "web-crf29", "web-crf24"]
    schedule = [cycle[k % 3] for k in range(len(visits))]  # every boundary switches rendition
    shown = {}
    stats = play(s, path, renderer, fps=None, renditions=schedule,
                 on_frame=lambda i, t, img: shown.__setitem__(i, img.clone()))
    assert stats.renditions == schedule and len(shown) == len(path)
    per_frame = [r for r, (_, n) in zip(schedule, visits) for _ in range(n)]
    differs = []
    for i, t in enumerate(path.times):
        own = renderer.render(s.frame(t, rendition=per_frame[i]), path.cameras, i)
        assert _psnr(shown[i], own) >= 60, (i, per_frame[i])
        other = "web-crf29" if per_frame[i] == "web" else "web"
        differs.append(_psnr(shown[i], renderer.render(s.frame(t, rendition=other), path.cameras, i)))
    assert min(differs) < 50, differs  # the renditions do render differently (so the schedule mattered)


def test_play_stream_over_a_simulated_link(ladder_stream):
    s = open_stream(ladder_stream, hwaccel="none")
    rates = {r.name: r.average_bps for r in s.manifest.renditions}
    assert by_bitrate(s) == list(reversed(LADDER))
    fast = play_stream(s, "orbit", size=(16, 16), frames=16, device="cpu", progress=False, bandwidth=100_000)
    assert fast.link is not None and fast.renditions[0] == "web-crf29" and set(fast.renditions[1:]) == {"web"}
    assert fast.link.stall_s == 0 and "time in each rendition" in fast.summary()
    # below the lowest rendition's rate: it stalls, and a real-time player waits the stalls out
    slow_kbps = 0.5 * rates["web-crf29"] / 1000
    slow = play_stream(s, "orbit", size=(16, 16), frames=8, device="cpu", progress=False, bandwidth=slow_kbps)
    assert set(slow.renditions) == {"web-crf29"} and slow.link.stall_s > 0.05
    assert slow.stalled_s == pytest.approx(slow.link.stall_s)
    assert slow.startup_s >= slow.link.startup_s - 1e-9  # (t0 + x) - t0 rounds
    # wall_s runs from frame 0 to the last one shown: its slot is 7 frame times later, moved on by the stalls
    assert slow.wall_s >= 7 / s.fps + slow.link.stall_s - 1e-3
    d = slow.to_dict()
    assert d["link"]["stall_s"] == pytest.approx(slow.link.stall_s) and len(d["link"]["fetches"]) == len(slow.renditions)
    assert len(slow.renditions) == len(gop_visits([t % s.num_frames for t in range(8)], gop_table(s)))


def test_forced_rendition_with_a_hole(ladder_stream, tmp_path):
    """The contract: one rendition per GOP visit of the path (not per frame); GOP 1's forced
    rendition is missing, so that visit falls back to the next lower one and a note says so."""
    copy = shutil.copytree(ladder_stream, tmp_path / "holed.fvv")
    (copy / "gop_00001" / "web-crf24.mp4").unlink()
    s = open_stream(copy, hwaccel="none")
    times = list(range(s.num_frames))  # one pass: each GOP visited once
    want = ["web-crf29" if g == 1 else "web-crf24" for g in range(s.num_gops)]
    chosen, link, notes = choose_renditions(s, times, s.fps, rendition="web-crf24")
    assert chosen == want and link is None
    assert notes == ["GOP 1: rendition web-crf24 is missing, played web-crf29 instead"]
    visits = link_visits(s, times, s.fps)
    assert [v.gop for v in visits] == list(range(s.num_gops))
    assert visits[1].available == ("web", "web-crf29") and visits[0].bits["web"] == 8 * s.gop_bytes(0, "web")
    chosen, link, notes = choose_renditions(s, times, s.fps, bandwidth=10, rendition="web-crf24")
    assert chosen == want and link.forced == "web-crf24" and len(notes) == 1
    with pytest.raises(StreamError, match="no rendition 'nope'"):
        choose_renditions(s, times, s.fps, rendition="nope")


def test_play_cli_bandwidth_and_rendition(ladder_stream):
    base = ["play", str(ladder_stream), "--size", "16x16", "--frames", "8", "--device", "cpu"]
    r = CliRunner().invoke(main, base + ["--bandwidth", "100000"])
    assert r.exit_code == 0, r.output
    assert "link 100000 kbit/s (adaptive)" in r.output and "time in each rendition: web" in r.output
    r = CliRunner().invoke(main, base + ["--rendition", "web-crf29"])
    s = open_stream(ladder_stream, hwaccel="none")
    visits = len(gop_visits(make_path("orbit", s.num_frames, s.aabb, 8, (16, 16)).times, gop_table(s)))
    assert r.exit_code == 0 and f"renditions (GOP visits): web-crf29 {visits}" in r.output, r.output
    r = CliRunner().invoke(main, base + ["--rendition", "nope"])
    assert r.exit_code == 2 and "no rendition 'nope'" in r.output
    r = CliRunner().invoke(main, ["play", str(ladder_stream), "--decode-only", "--bandwidth", "100"])
    assert r.exit_code == 2
