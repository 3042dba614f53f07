"""Fixtures of the batch tests: two tiny runs and what plain `featvid bake` + `featvid encode` make
of them (the reference every executor's output is held to)."""
from __future__ import annotations

from pathlib import Path

import pytest

from featvid.batch import LocalExecutor
from featvid.bake import bake_run
from featvid.codecs import encode_baked
from tests.batch.helpers import PRESETS, content, make_runs


@pytest.fixture(scope="session")
def batch_runs(tmp_path_factory) -> dict[str, Path]:
    """Runs "alpha" and "beta": 6 frames in GOPs of 2 (3 GOPs each), 24^3, seeds 0 and 1."""
    return make_runs(tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="session")
def reference(batch_runs, tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """{sequence: {"baked" | PRESET + ".fvv": content digest}} of the plain commands' outputs."""
    root = tmp_path_factory.mktemp("reference")
    ref = {}
    for name, run in batch_runs.items():
        baked = bake_run(run, root / name / "baked")
        ref[name] = {"baked": content(baked)}
        for p in PRESETS:
            ref[name][f"{p}.fvv"] = content(encode_baked(baked, root / name / f"{p}.fvv", preset=p))
    return ref


@pytest.fixture(scope="session")
def run_with_data(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-frame synthetic run (one GOP) and a tiny dataset of as many frames to score it on
    (3 views, one held out, 16 px): the scores mean nothing, the scoring is what is tested."""
    from featvid.data.synth import write_synth

    root = tmp_path_factory.mktemp("scored")
    run = make_runs(root, names=("solo",), frames=2, gop=2)["solo"]
    return run, write_synth(root / "data", frames=2, views=3, size=16, seed=0, test_views=1)


@pytest.fixture(scope="session")
def pool():
    """One process pool of 2 workers for the tests that run on `local` (it starts in seconds:
    each worker imports torch)."""
    ex = LocalExecutor(workers=2)
    yield ex
    ex.close()
