"""The package's layers point one way: a module imports from its own part of the package or from a
lower layer, never from a higher one, and no modules import each other in a circle.

The layers, lowest first (a part is a top-level module or sub-package of headstart):

    errors, paths                      what everything may use
    files, cache_folders, runtime      atomic files, cache folders, device, precision, processes
    config, backbones, strategies, evaluation
    data, model, head_init, run_folder
    training, inference                a run is trained; a finished run is used
    reporting, export, serve,          what is done with finished runs; choosing a run by measuring
    predict_table, auto
    audit                              checks data (uses the feature cache and the report's templates)
    api                                a run as the user asks: exclusions in, the report out
    compare                            several runs, side by side
    cli, __init__                      the command line and the Python API's entry points
    __main__                           python -m headstart

Parts in the same layer do not import each other. Imports inside functions count as imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import headstart

LAYERS = [
    {"errors", "paths"},
    {"files", "cache_folders", "runtime"},
    {"config", "backbones", "strategies", "evaluation"},
    {"data", "model", "head_init", "run_folder"},
    {"training", "inference"},
    {"reporting", "export", "serve", "predict_table", "auto"},
    {"audit"},
    {"api"},
    {"compare"},
    {"cli", "__init__"},
    {"__main__"},
]
PACKAGE = Path(headstart.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The headstart modules `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("headstart"):
                continue
            for alias in node.names:  # `from .. import run_folder` imports the module headstart.run_folder
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_path(candidate) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("headstart")}
    return {m for m in found if m != name}


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(part: str) -> int:
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"headstart.{part} is in no layer: add it to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_part_of_the_package_has_a_layer():
    for module in graph():
        layer_of(part_of(module))


def test_no_module_imports_from_a_higher_layer_or_a_sibling_part():
    wrong = []
    for module, imported in graph().items():
        for target in imported:
            a, b = part_of(module), part_of(target)
            if a != b and layer_of(b) >= layer_of(a):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_training_imports_neither_reporting_nor_audit():
    imported = {t for m, targets in graph().items() if part_of(m) == "training" for t in targets}
    assert not {t for t in imported if part_of(t) in ("reporting", "audit", "api", "cli")}


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node] & set(edges)):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                circle = visit(nxt)
                if circle:
                    return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            circle = visit(node)
            assert circle is None, " -> ".join(circle)


def test_the_layering_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a training module that imported the report would be named."""
    fake = PACKAGE / "training" / "run.py"
    source = fake.read_text() + "\nfrom ..reporting.report import write_run_report\n"
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == fake else real_read(self, *a, **k))
    try:
        test_no_module_imports_from_a_higher_layer_or_a_sibling_part()
    except AssertionError as e:
        assert "headstart.training.run imports headstart.reporting.report" in str(e)
    else:
        raise AssertionError("the layering check missed an upward import")
