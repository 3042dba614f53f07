"""Every number a dataset's cameras are made of is checked on read (issue 15, item 4): a zero or
negative field of view, an all-zero, scaled or sheared pose, a focal length or image size out of
range, a time or principal point far out, N3DV rows of the wrong length or with a bad pose -- each
is one line naming the file and the field, and exit status 2 (they were tracebacks, allocations of
terabytes, or exit 0 with broken cameras)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from featvid.cli import main
from featvid.data import load_dataset
from featvid.errors import DatasetError
from tests.data.helpers import frame_pattern, ring_cameras, write_blender, write_poses_bounds, write_video
from tests.field.test_untrusted import edit_json, one_line_error

Z = [[0.0] * 4] * 4


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """2 times x (3 train + 1 test) views, 24 x 32 px: the pristine copy each test edits."""
    folder = tmp_path_factory.mktemp("rig")
    write_blender(folder, [ring_cameras(4, 24, 32)] * 2, {"train": [0, 1, 2], "test": [3]})
    return folder


@pytest.fixture
def copy(rig, tmp_path):
    import shutil

    return shutil.copytree(rig, tmp_path / "d")


def _frame0(**kw):
    return lambda m: m["frames"][0].update(**kw)


def _pose(m):
    return lambda d: d["frames"][0].update(transform_matrix=m)


@pytest.mark.parametrize("change, field", [
    (lambda m: m.update(camera_angle_x=0), "camera_angle_x"),  # was ZeroDivisionError
    (lambda m: m.update(camera_angle_x=-0.5), "camera_angle_x"),
    (lambda m: m.update(camera_angle_x=math.nan), "camera_angle_x"),
    (lambda m: m.update(camera_angle_x=math.pi), "camera_angle_x"),  # was exit 0: focal ~1e-15
    (lambda m: m.update(camera_angle_x=True), "camera_angle_x"),
    (_pose(Z), "transform_matrix"),  # all zero: was LinAlgError
    (_pose([[math.inf] * 4] * 4), "transform_matrix"),
    (_pose([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]), "rigid"),  # scaled: was exit 0
    (_pose([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "rigid"),  # sheared: was exit 0
    (_pose([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]), "last row"),  # was exit 0
    (_pose([[1, 0, 0, 1e30], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "camera position"),
    (lambda m: m.update(fl_x=0), "fl_x"),
    (lambda m: m.update(fl_y=-3), "fl_y"),
    (lambda m: m.update(fl_x=1e300), "fl_x"),
    (lambda m: m.update(w=0), "'w'"),
    (lambda m: m.update(h=-24), "'h'"),
    (lambda m: m.update(w=10**9), "'w'"),
    (lambda m: m.update(w=32.5), "'w'"),
    (lambda m: m.update(cx=1e30), "cx"),  # was an allocation failure (traceback) in the scene box
    (lambda m: m.update(cy=-1e5), "cy"),
    (_frame0(time=1e300), "time"),  # was "Maximum allowed size exceeded" (traceback)
    (lambda m: m.update(fps=1e300), "fps"),  # was exit 0
    (lambda m: m.update(fps=True), "fps"),
    (lambda m: m.update(background=[1, 1]), "background"),
    (lambda m: m.update(background="011"), "background"),  # a string of digits was three numbers
    (lambda m: m.update(aabb=[[0, 0, math.nan], [1, 1, 1]]), "aabb"),
    (lambda m: m.update(aabb=[[1, 1, 1], [0, 0, 0]]), "aabb"),
    (lambda m: m.update(aabb=[[-1, -1], [1, 1]]), "aabb"),
])
def test_a_bad_camera_number_is_one_line_naming_file_and_field(copy, change, field):
    edit_json(copy / "transforms_train.json", change)
    one_line_error(CliRunner().invoke(main, ["info", str(copy)]), "transforms_train.json", field)


def test_evenly_spaced_times_far_apart_report_the_gap_without_allocating(copy):
    """Times 0, 1e-6 and 1e5 step by 1e-6: listing every missing time would be 1e11 of them."""
    def times(m):
        for f, t in zip(m["frames"], [0, 0, 0, 1e-6, 1e-6, 1e-6]):
            f["time"] = t
        m["frames"] += [dict(f, time=1e5) for f in m["frames"][:3]]

    edit_json(copy / "transforms_train.json", times)
    one_line_error(CliRunner().invoke(main, ["info", str(copy)]), "transforms_train.json", "no images at time")


def test_rigid_poses_within_rounding_and_mirrored_rigs_still_read(copy):
    """JSON written with 6 decimals is orthonormal to ~1e-6: accepted; so is an orthonormal mirror."""
    from featvid.data.files import check_pose

    meta = json.loads((copy / "transforms_train.json").read_text())
    for f in meta["frames"]:
        f["transform_matrix"] = np.round(np.asarray(f["transform_matrix"]), 6).tolist()
    (copy / "transforms_train.json").write_text(json.dumps(meta))
    assert load_dataset(copy).num_views == 4
    check_pose(np.diag([1.0, 1.0, -1.0, 1.0]), "mirror")
    with pytest.raises(DatasetError, match="rigid"):
        check_pose(np.diag([1.0, 1.0, 1.002, 1.0]), "x")


def test_an_image_larger_than_the_ceiling_is_refused_before_it_is_decoded(copy):
    """A PNG header claiming 20000 x 20000 pixels (1.6 GB as float RGBA) is refused from its size."""
    import struct
    import zlib

    from featvid.data.files import MAX_IMAGE_SIDE

    png = copy / "train" / "t0_v0.png"
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 6, 0, 0, 0)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                    + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    one_line_error(CliRunner().invoke(main, ["info", str(copy)]), "t0_v0.png", str(MAX_IMAGE_SIDE))


# ---- N3DV poses_bounds.npy --------------------------------------------------------------------

H, W, T, V = 16, 24, 3, 3


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("n3dv")
    for v in range(V):
        write_video(folder / f"cam{v:02d}.mp4", [frame_pattern(t, v, H, W) for t in range(T)])
    write_poses_bounds(folder / "poses_bounds.npy", ring_cameras(V, H, W))
    return folder


def _edit_rows(change):
    def edit(arr):
        arr = arr.copy()
        change(arr)
        return arr
    return edit


@pytest.mark.parametrize("edit, field", [
    (lambda a: a[:, :16], "17"),  # rows of the wrong length
    (lambda a: np.concatenate([a, a[:, :1]], 1), "17"),
    (lambda a: a.reshape(-1), "17"),
    (_edit_rows(lambda a: a.__setitem__((1, 3), np.nan)), "camera 1"),
    (_edit_rows(lambda a: a.__setitem__((2, 16), np.inf)), "camera 2"),
    (_edit_rows(lambda a: a.__setitem__((0, slice(0, 15)), 0.0)), "camera 0"),  # all-zero pose (hwf too)
    (_edit_rows(lambda a: a.__setitem__((0, slice(0, 4)), 2 * a[0, 0:4])), "rigid"),  # a scaled rotation row
    (_edit_rows(lambda a: a.__setitem__((1, 4), 1e9)), "height and width"),  # H of a billion pixels
    (_edit_rows(lambda a: a.__setitem__((1, 14), 0.0)), "focal"),
    (_edit_rows(lambda a: a.__setitem__((1, 15), -1.0)), "near and far"),
    (_edit_rows(lambda a: a.__setitem__((1, 16), 1e300)), "near and far"),
    (lambda a: a.astype(np.complex128), "non-numeric"),
])
def test_a_bad_poses_bounds_row_is_one_line_naming_the_camera(capture, tmp_path, edit, field):
    import shutil

    folder = shutil.copytree(capture, tmp_path / "c")
    arr = np.load(folder / "poses_bounds.npy")
    np.save(folder / "poses_bounds.npy", edit(arr))
    one_line_error(CliRunner().invoke(main, ["info", str(folder)]), "poses_bounds.npy", field)
