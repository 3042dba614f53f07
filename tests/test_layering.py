"""The house: featvid's packages import only downward, lazy imports included.

The layers, bottom to top (DESIGN.md, "Layout"):

    base      errors, atomic, names, device, metrics, limits, progress, outputs (no featvid imports but each other)
    data      cameras, rays, dataset loaders, synthetic scenes
    field     the representation every stage shares (grids, mappings, MLP, reference renderer)
              gaussians: the other representation (3DGS frames, PLY, rasterizer), beside field
    formats   the folders that cross stages: the run folder and the baked folder
    train     the trainer (coarse pass, GOPs, frame after frame)
    bake      the baker (run folder -> baked folder)
    codecs    quantization, packing, presets, back ends, manifest, stream reader
    render    fast renderer, camera paths, player, web server
    pipeline  the jobs that chain stages (demo, cached runs and streams, evaluation of a folder)
    batch     batch jobs: bake / encode per GOP on a process pool or Ray, resumable
    bench     the benchmark harness and its baselines
    api       the Python API (featvid/api.py), and the package's face (featvid/__init__.py), which
              loads it on first use: at import time the face imports only the base layer
    cli       argument parsing and printing

A module may import its own package and any layer below it, never one above: a loop between
packages (the trouble issue #12 was filed about) cannot come back without failing here. train,
bake and codecs each stand on formats and import none of each other (SIBLINGS): a player that
reads streams never loads the trainer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import featvid

LAYERS = [
    {"errors", "atomic", "names", "device", "metrics", "limits", "progress", "outputs"},
    {"data"},
    {"field", "gaussians"},
    {"formats"},
    {"train"},
    {"bake"},
    {"codecs"},
    {"render"},
    {"pipeline"},
    {"batch"},
    {"bench"},
    {"api", "__init__"},
    {"cli"},
]
SIBLINGS = [{"train", "bake", "codecs"}]  # layers in the list above, yet none imports another
ROOT = Path(featvid.__file__).parent


def _layer(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise AssertionError(f"featvid/{unit} is in no layer: add it to LAYERS (and to DESIGN.md)")


def _unit(path: Path) -> str:
    """The package (folder) or top-level module a file belongs to."""
    rel = path.relative_to(ROOT).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, featvid unit) of every featvid import in a file, at any depth (lazy imports count)."""
    return _imports_of(ast.parse(path.read_text()))


def _imports_of(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "featvid":  # `from featvid import field`
                names = [f"featvid.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "featvid" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_every_import_points_down_or_sideways():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        mine = _layer(unit)
        for line, other in _imports(path):
            if other != unit and _layer(other) > mine:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} ({unit}) imports featvid.{other}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_trainer_baker_and_codecs_stand_side_by_side():
    crossing = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        for group in SIBLINGS:
            for line, other in _imports(path):
                if unit in group and other in group and other != unit:
                    crossing.append(f"{path.relative_to(ROOT.parent)}:{line} ({unit}) imports featvid.{other}")
    assert not crossing, "imports between train, bake and codecs:\n" + "\n".join(crossing)


def _module_graph() -> dict[str, set[str]]:
    """featvid module -> the featvid modules (and names inside them) it imports, at any depth."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        mod = ".".join(("featvid", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("featvid."):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("featvid.")}
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the modules of one package (a package's face, __init__, is left out:
    it re-exports its modules by design)."""
    def package(m: str) -> str:
        return m.rsplit(".", 1)[0]

    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    found.append(trail + [start])
                    stack = []
                    break
                if nxt in graph and nxt not in trail and package(nxt) == package(start):
                    stack.append((nxt, trail + [nxt]))
    return found


def test_no_import_loop_inside_a_package():
    """Inside a package, modules import each other without a cycle (the old data/dataset.py loop)."""
    cycles = _cycles(_module_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_loop_check_sees_a_loop():
    graph = {"featvid.data.load": {"featvid.data.blender"}, "featvid.data.blender": {"featvid.data.load"},
             "featvid.data.cameras": set()}
    assert _cycles(graph) and all(c[0] == c[-1] for c in _cycles(graph))
    assert not _cycles({"featvid.data.load": {"featvid.data.blender"}, "featvid.data.blender": set()})


def test_the_check_sees_an_upward_import(tmp_path):
    """The scan itself works: a lazy import of the CLI from the representation would be caught."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from featvid.cli import main\n    import featvid.render.player\n")
    assert [u for _, u in _imports(f)] == ["cli", "render"]
    assert _layer("cli") > _layer("field")
    assert _layer("bench") < _layer("api") == _layer("__init__") < _layer("cli")  # no stage may import the API


def _eager_imports(path: Path) -> list[tuple[int, str]]:
    """(line, featvid unit) of the featvid imports a module runs when it is imported: those outside
    its functions and classes (not, say, the one in a PEP 562 __getattr__)."""
    tree = ast.parse(path.read_text())
    eager = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return _imports_of(ast.Module(body=eager, type_ignores=[]))


def test_the_package_face_loads_only_the_base_when_imported():
    """featvid/__init__.py sits in the API's layer so that its __getattr__ may load featvid.api,
    but `import featvid` itself must stay cheap: at import time it imports only the base layer."""
    eager = [(line, u) for line, u in _eager_imports(ROOT / "__init__.py") if _layer(u) > 0]
    assert not eager, f"featvid/__init__.py imports above the base layer when imported: {eager}"
    assert "api" in [u for _, u in _imports(ROOT / "__init__.py")]  # the lazy import is there, and seen


def test_the_face_check_sees_an_eager_import(tmp_path):
    f = tmp_path / "__init__.py"
    f.write_text("from featvid.errors import X\nfrom featvid.pipeline import y\n\n"
                 "def __getattr__(name):\n    from featvid import api\n")
    assert [u for _, u in _eager_imports(f)] == ["errors", "pipeline"]


def test_importing_featvid_loads_no_torch():
    """`import featvid` and `import featvid.errors` (what every CLI error path needs) load no torch."""
    import subprocess
    import sys

    code = "import sys, featvid, featvid.errors; print('torch' in sys.modules, featvid.FeatvidError.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "FeatvidError"], out


def test_benchmarks_import_the_package_not_the_tests():
    """benchmarks/*.py run from an installed featvid: they import featvid, never tests/ (whose
    fixtures may change under them); the data makers they need live in the package."""
    bench = ROOT.parent / "benchmarks"
    found = []
    for path in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "tests"]
    assert not found, "benchmarks that import the tests:\n" + "\n".join(found)
