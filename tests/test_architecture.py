"""The house rules that keep the package navigable: no import cycles (top-level or inside functions), library code
never imports the CLI, only ``asfe3d/io`` swaps SimpleITK's and nibabel's axis orders, and the machine is not assumed
in library code."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asfe3d"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the asfe3d modules it imports anywhere in its body (``from asfe3d.a import b`` counts as
    ``asfe3d.a.b`` when that is a module, else ``asfe3d.a``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("asfe3d"):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_package_init_edge(a: str, b: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules, which import siblings through the package: not a
    cycle between modules, the way Python packages are built."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_no_import_cycles():
    graph = import_graph()
    pruned = {a: {b for b in bs if not _is_package_init_edge(a, b)} for a, bs in graph.items()}
    assert cycles(pruned) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_library_never_imports_the_cli():
    graph = import_graph()
    entry_points = {"asfe3d.__main__"}  # ``python -m asfe3d`` runs the command; nothing imports it
    offenders = sorted(m for m, deps in graph.items() if not m.startswith("asfe3d.cli") and m not in entry_points
                       and any(d.startswith("asfe3d.cli") for d in deps))
    assert offenders == []
    assert not [m for m, deps in graph.items() if entry_points & deps]


def axis_swaps(root: Path = PACKAGE) -> list[str]:
    """Modules outside ``asfe3d/io`` that swap SimpleITK's (z, y, x) and nibabel's (x, y, z) axes themselves."""
    pattern = re.compile(r"(transpose|permute)\(\s*(\w+\s*,\s*)?\(?\s*2\s*,\s*1\s*,\s*0\s*\)?\s*\)"
                         r"|GetArray(View)?FromImage\([^()]*\)\.T\b")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                  if p.parent.name != "io" and pattern.search(p.read_text(encoding="utf-8")))


def test_only_io_swaps_sitk_and_nibabel_axes():
    # the io package's sitk_to_numpy_xyz / numpy_xyz_to_sitk are the one place the two orders meet
    assert axis_swaps() == []


def test_axis_swaps_finds_a_transpose(tmp_path):
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "ok.py").write_text("a = b.transpose(2, 1, 0)\n")
    (tmp_path / "bad.py").write_text("a = b.transpose(2,1, 0)\n")
    for name, line in (("np_form", "a = np.transpose(b, (2, 1, 0))"), ("tuple_form", "a = b.transpose((2, 1, 0))"),
                       ("permute", "a = t.permute(2, 1, 0)"), ("dot_t", "a = sitk.GetArrayFromImage(img).T")):
        (tmp_path / f"{name}.py").write_text(line + "\n")
    (tmp_path / "fine.py").write_text("a = b.transpose(0, 2, 1)\nc = t.permute(0, 1, 4, 2, 3)\n")
    assert axis_swaps(tmp_path) == ["bad.py", "dot_t.py", "np_form.py", "permute.py", "tuple_form.py"]


@pytest.mark.parametrize("needle", ["_MAX_WORKERS = 2", "evaluation machines"])
def test_no_machine_assumptions_in_library_code(needle):
    hits = [str(p) for p in PACKAGE.rglob("*.py") if needle in p.read_text(encoding="utf-8")]
    assert hits == []


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level package (``asfe3d.io``, ``asfe3d.registration``...; a top-level module stands for itself) -> the
    other top-level packages its modules import."""
    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(top(module), set()).update(top(d) for d in deps if top(d) != top(module))
    return out


def test_no_import_cycles_between_packages():
    """The packages are layered: io below registration, transforms above both (frame realignment is a transform,
    transform files are read and written in io), so no package imports one that imports it back."""
    assert cycles(package_graph(import_graph())) == []


def test_package_cycle_finder_sees_a_cycle_through_submodules():
    graph = {"asfe3d.io.volume": {"asfe3d.registration.frames"}, "asfe3d.registration.frames": set(),
             "asfe3d.registration.register": {"asfe3d.io"}, "asfe3d.io": set()}
    assert cycles(package_graph(graph)) == [["asfe3d.io", "asfe3d.registration"]]


def test_no_empty_package():
    """Every package holds code: a module besides ``__init__`` or definitions in its ``__init__``."""
    empty = []
    for init in PACKAGE.rglob("__init__.py"):
        siblings = [p for p in init.parent.iterdir() if p != init and (p.suffix == ".py" or (p / "__init__.py").exists())]
        body = [n for n in ast.parse(init.read_text(encoding="utf-8")).body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if not siblings and not body:
            empty.append(str(init.parent.relative_to(PACKAGE.parent)))
    assert empty == []


def test_no_private_names_imported_across_packages():
    """A module uses another package's (or top-level module's) public names only (``distributed`` uses
    ``cohort``'s public helpers)."""
    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asfe3d") and node.level == 0:
                offenders += [f"{name}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")
                              and top(node.module) != top(name)]
    assert offenders == []


#: none of the functions of the house (the package's modules and packages below) is longer than this
MAX_FUNCTION_LINES = 120
_HOUSE = ("asfe3d/__init__.py", "asfe3d/__main__.py", "asfe3d/pipeline.py", "asfe3d/settings.py", "asfe3d/cohort.py",
          "asfe3d/distributed.py", "asfe3d/defaults.py", "asfe3d/errors.py", "asfe3d/bundle.py",
          "asfe3d/benchmark.py", "asfe3d/visualize.py", "asfe3d/cli", "asfe3d/bids", "asfe3d/inferers",
          "asfe3d/transforms", "asfe3d/fusion", "asfe3d/training", "asfe3d/data", "asfe3d/reports", "asfe3d/io",
          "asfe3d/evaluation", "asfe3d/networks", "asfe3d/metrics", "asfe3d/losses", "asfe3d/registration",
          "asfe3d/utils")


def _house_files(entries: tuple[str, ...]) -> list[Path]:
    root = PACKAGE.parent
    return [p for rel in entries for p in ([root / rel] if rel.endswith(".py") else sorted((root / rel).rglob("*.py")))]


def test_house_covers_every_module():
    """Every module of the package is held to the function length (a new module or package is named in _HOUSE)."""
    held = _house_files(_HOUSE)
    assert all(p.is_file() for p in held)
    assert sorted(set(PACKAGE.rglob("*.py")) - set(held)) == []


def test_functions_of_the_house_are_short():
    root = PACKAGE.parent
    files = _house_files(_HOUSE)
    long = [f"{p.relative_to(root)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in files for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def unresolved_imports() -> list[str]:
    """Every ``from asfe3d.x import name`` in the package, at top level or inside a function (the lazy imports that
    only run on some paths), whose ``name`` the module ``asfe3d.x`` does not define: ``"file:line: x.name"``."""
    import importlib

    modules = _modules()
    bad: list[str] = []
    for name, path in sorted(modules.items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("asfe3d")):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and f"{node.module}.{alias.name}" not in modules:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.module}.{alias.name}")
    return bad


def test_every_lazy_import_resolves():
    # a function-level import of a name that moved (benchmark's make_brain_pair once imported write_transform from
    # the registration module after it had moved to asfe3d.io.transform) fails only when that path runs
    assert unresolved_imports() == []


def test_unresolved_imports_finds_a_missing_name(tmp_path, monkeypatch):
    fake = tmp_path / "asfe3d" / "zz_fake.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from asfe3d.io.transform import no_such_name\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "asfe3d")
    assert unresolved_imports() == ["asfe3d/zz_fake.py:2: asfe3d.io.transform.no_such_name"]
