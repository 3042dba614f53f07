"""Which GOP holds each stream frame, and the GOPs a camera path visits in order.

A camera path asks for stream frames `times` (output frame i shows stream frame times[i]); the
player decodes whole GOPs, so it plays a path as a sequence of GOP visits: a stretch of output
frames inside one GOP. A path that loops visits a GOP again (and decodes it again).
"""
from __future__ import annotations

from featvid.errors import StreamError
from featvid.render.source import PlayableStream


def gop_table(stream: PlayableStream) -> list[int]:
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
