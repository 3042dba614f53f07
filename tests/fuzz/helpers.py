"""What the fuzz suite shares: JSON mutations, the CLI contract every mutated input must keep,
and a time and memory bound on each example.

The contract (issue 15): a command given a damaged file either succeeds with finite output or
exits 2 with ONE line on stderr naming what is wrong -- never a traceback, a hang, NaN in its
output, or (for damage a hash must catch) a result computed from the damaged bytes.

Examples are bounded and derandomized (`FUZZ`), so CI sees the same inputs every run and the
suite stays within its time (about 40 s on 2 cores, after the session fixtures).
"""
from __future__ import annotations

import json
import math
import re
import resource
import signal
from contextlib import contextmanager
from typing import Any, Iterator

from hypothesis import HealthCheck
from hypothesis import strategies as st

# every fuzz property: deterministic inputs, no per-example deadline (the bound below does that)
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXAMPLE_SECONDS = 20.0  # a command that runs longer on these tiny inputs is a hang
EXAMPLE_EXTRA_BYTES = 3 << 30  # address space an example may add (a bigger allocation is unbounded work)

Path_ = tuple  # a key path into JSON data: ("gops", 0, "ranges", 1)


class Hang(Exception):
    """An example ran past EXAMPLE_SECONDS."""


@contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS, extra_bytes: int = EXAMPLE_EXTRA_BYTES) -> Iterator[None]:
    """Run the body under a wall-clock alarm (raises Hang) and an address-space ceiling (an
    allocation past it fails inside the command, which then breaks the contract: a traceback)."""
    def on_alarm(signum, frame):
        raise Hang(f"example ran past {seconds:g} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    ceiling = used + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (ceiling if hard == resource.RLIM_INFINITY else min(ceiling, hard), hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---- the contract -------------------------------------------------------------------------------

_NON_FINITE = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def contract_broken(r, needles: tuple[str, ...] = ()) -> str | None:
    """Why a CliRunner result breaks the contract (None: it keeps it). Exit 0: no NaN or inf in the
    output. Exit 2: one line "featvid: error: ..." last, nothing error-like before it, no traceback,
    and each of `needles` in it. Anything else (a traceback, a Hang) is broken."""
    # a progress bar redraws with \r and moves the cursor with ANSI codes: each starts a new line
    # (an open bar is not ended by a newline before the error: the error line starts at its text)
    text = _ANSI.sub("\n", r.output.replace("\r", "\n")).replace("featvid: error:", "\nfeatvid: error:")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if r.exit_code == 0:
        if r.output.lstrip().startswith("{"):  # --json: a number, not a name that reads "nan"
            bad = [repr(v) for v in _numbers(json.loads(r.output)) if not math.isfinite(v)]
        else:
            bad = [line for line in lines if _NON_FINITE.search(line)]
        return f"exit 0 with non-finite output: {bad[:2]}" if bad else None
    if r.exit_code != 2:
        import traceback

        tb = "".join(traceback.format_exception(*r.exc_info)) if r.exc_info else ""
        return f"exit {r.exit_code}: {r.exception!r}\n{tb[-3000:]}"
    errors = [line for line in lines if line.startswith("featvid: error:")]
    if len(errors) != 1 or lines[-1] != errors[0] or "Traceback" in text:
        return f"exit 2 without exactly one final error line: {r.output[-800:]}"
    missing = [n for n in needles if n not in errors[0]]
    return f"error line does not name {missing}: {errors[0]}" if missing else None


def _numbers(d: Any) -> Iterator[float]:
    """Every number in JSON data."""
    if isinstance(d, dict):
        d = list(d.values())
    if isinstance(d, list):
        for v in d:
            yield from _numbers(v)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield float(d)


def check(r, what: str, needles: tuple[str, ...] = ()) -> None:
    """Assert the contract, saying which mutation broke it."""
    why = contract_broken(r, needles)
    assert why is None, f"{what}\n{why}"


# ---- JSON mutations -----------------------------------------------------------------------------

def key_paths(d: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key path of JSON data, containers and leaves, outermost first (the root excluded)."""
    out: list[Path_] = []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += key_paths(v, prefix + (k,))
    return out


def get(d: Any, path: Path_) -> Any:
    for k in path:
        d = d[k]
    return d


DELETE = object()  # the mutation that removes the key (or list item)

# odd numbers, the ones that broke readers before: zero, negative, huge, not finite, almost integers
EDGE_NUMBERS = [0, -1, 1, 2, 7, -(2**31), 2**31, 2**53 + 1, 2**63, 10**12, 10**300, -(10**300), 0.5, -0.5, 1e-9,
                1e-300, 1e300, -1e300, math.nan, math.inf, -math.inf, 1.0000001, 3.14159, True, False]

json_scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(EDGE_NUMBERS),
                         st.integers(-(2**64), 2**64), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=6), st.sampled_from(["", "../x", "/etc/passwd", "gop_00000", "0", "NaN"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)), max_leaves=4)
# a replacement value, or deleting the key; empty containers are tried often
replacements = st.one_of(st.just(DELETE), st.sampled_from([[], {}, [[]], "", None]), json_values)


def mutate(d: Any, path: Path_, value: Any) -> Any:
    """A deep copy of `d` with the item at `path` replaced by `value` (or removed for DELETE)."""
    out = json.loads(json.dumps(d))
    parent = get(out, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def dump(d: Any) -> str:
    """JSON text with NaN and Infinity as JSON's extension literals (what Python's reader accepts)."""
    return json.dumps(d)


@contextmanager
def mutated_json(path: Any, data: Any, name: str) -> Iterator[str]:
    """Overwrite the JSON file `path` with one mutation drawn from hypothesis' `data` (a key path,
    a replacement value) and yield what was done, for messages; the file is restored after."""
    text = path.read_text()
    pristine = json.loads(text)
    key = data.draw(st.sampled_from(key_paths(pristine)), label="path")
    value = data.draw(replacements, label="value")
    try:
        path.write_text(dump(mutate(pristine, key, value)))
        yield f"{name} {list(key)} -> {'<deleted>' if value is DELETE else repr(value)[:80]}"
    finally:
        path.write_text(text)


@contextmanager
def flipped_bytes(target: Any, data: Any, most: int = 1) -> Iterator[str]:
    """XOR 1..`most` bytes of the file `target` from an offset, both drawn from hypothesis' `data`;
    yields what was done, for messages; the file is restored after."""
    original = target.read_bytes()
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    n = data.draw(st.integers(1, most), label="bytes")
    mask = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(original)
    for i in range(offset, min(offset + n, len(original))):
        damaged[i] ^= mask
    try:
        target.write_bytes(bytes(damaged))
        yield f"{target.name}: {n} bytes at {offset} xor {mask}"
    finally:
        target.write_bytes(original)


def assert_refused(commands: list[list[str]], what: str, name: str) -> None:
    """Every CLI command of `commands` exits 2 with one line naming the file `name`."""
    from click.testing import CliRunner

    from featvid.cli import main

    for args in commands:
        with bounded():
            r = CliRunner().invoke(main, args)
        check(r, f"{what}: featvid {args[0]}", needles=(name,))
        assert r.exit_code == 2, f"{what}: featvid {args[0]} exit 0 on corrupt bytes:\n{r.output[-500:]}"
