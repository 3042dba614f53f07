"""The loaders' shared pieces: the train/test view split and the featvid extension keys."""
from __future__ import annotations

from featvid.data.files import extension
from featvid.data.video import split_views


def test_view_0_is_held_out_by_default_and_a_single_camera_trains():
    assert split_views(4, None) == ([1, 2, 3], [0])
    assert split_views(4, [1, 3]) == ([0, 2], [1, 3])
    assert split_views(3, []) == ([0, 1, 2], [])
    assert split_views(1, None) == ([0], [])  # a single camera cannot spare a view


def test_an_extension_key_comes_from_the_first_json_that_has_it():
    metas = [{"fps": 24}, {"fps": 30, "aabb": [0, 1]}]
    assert extension(metas, "fps", 30.0) == 24
    assert extension(metas, "aabb", None) == [0, 1]
    assert extension(metas, "background", (1.0, 1.0, 1.0)) == (1.0, 1.0, 1.0)
