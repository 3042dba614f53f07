"""Which rendition each GOP visit of a camera path plays (adaptive streaming in the player).

Three ways: the stream's main rendition (nothing chosen); one named rendition everywhere, a GOP
whose video of it is missing falling back to the nearest one by bitrate; or the ABR rule over a
simulated link of a given bandwidth (featvid.render.abr, the web player's throughput rule), which
also yields the link's report: startup, stalls, switches.
"""
from __future__ import annotations

import logging

from featvid.errors import StreamError
from featvid.render.abr import MAX_BUFFER_S, AbrRule, Link, LinkReport, Visit, simulate
from featvid.render.gops import gop_table, gop_visits
from featvid.render.source import PlayableStream

log = logging.getLogger(__name__)


def link_visits(stream: PlayableStream, times: list[int], fps: float) -> list[Visit]:
    """The GOP visits of a path's frame times as the link simulation fetches them: play time at
    `fps`, each rendition's bits (video + mapping, from the manifest) and which are on disk."""
    return [Visit(g, n / fps, {r: 8.0 * stream.gop_bytes(g, r) for r in stream.renditions}, tuple(stream.available(g)))
            for g, n in gop_visits(times, gop_table(stream))]


def by_bitrate(stream: PlayableStream) -> list[str]:
    """The stream's rendition names, lowest average bitrate first (the ABR rule's order).

    Ordered by the bytes of all GOPs: the mappings are the same in every rendition, so this is
    the order of the videos' average bitrates; a tie keeps the stream's order."""
    total = {r: sum(stream.gop_bytes(g, r) for g in range(stream.num_gops)) for r in stream.renditions}
    return sorted(stream.renditions, key=total.__getitem__)


def check_rendition(stream: PlayableStream, rendition: str) -> None:
    """StreamError naming the stream's renditions when it has none called `rendition`."""
    if rendition not in stream.renditions:
        raise StreamError(f"the stream has no rendition {rendition!r}; it has {', '.join(stream.renditions)}")


def choose_renditions(stream: PlayableStream, times: list[int], fps: float, bandwidth: float | None = None,
                      rendition: str | None = None, latency_s: float = 0.0,
                      max_buffer_s: float = MAX_BUFFER_S, rule: AbrRule = AbrRule()
                      ) -> tuple[list[str] | None, LinkReport | None, list[str]]:
    """What each GOP visit of a path plays: (renditions or None for the main one, the simulated
    link's report or None, fallback notes). bandwidth: kbit/s of a simulated link (the ABR rule
    picks, or `rendition` is forced over it); rendition alone: that one everywhere, a GOP where
    its video is missing falling back to the nearest one."""
    if bandwidth is None and rendition is None:
        return None, None, []
    if rendition is not None:
        check_rendition(stream, rendition)
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
