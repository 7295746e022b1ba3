"""pyproject.toml declares every third-party package that src/headstart imports, lazy imports inside
functions included (else `pip install headstart` gives commands that fail on import), and `make`'s lock
(requirements.txt, requirements-weights.txt) holds every package pyproject.toml names."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0))


def declared() -> dict[str, set[str]]:
    """{"core": names, "<extra>": names} from pyproject.toml; self-references (headstart[...]) left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project.get("optional-dependencies", {})}
    return {group: {requirement_name(r) for r in reqs} - {"headstart"} for group, reqs in groups.items()}


def pinned(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {requirement_name(line) for line in lines if line}


def imported_modules() -> dict[str, list[str]]:
    """Top-level names of the absolute imports anywhere in src/headstart (functions included): {name: [where]}."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "src" / "headstart").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "headstart" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_imported_package_is_declared_in_pyproject_or_installed_without_dependencies():
    allowed = set().union(*declared().values()) | pinned(ROOT / "requirements-weights.txt")
    distributions = packages_distributions()
    problems = []
    for module, where in sorted(imported_modules().items()):
        names = {canonical(d) for d in distributions.get(module, [])}
        if not names:
            problems.append(f"{module} (imported at {where[0]}) is not installed here, so its package is unknown")
        elif not names & allowed:
            problems.append(f"{module} (imported at {where[0]}): add {sorted(names)[0]} to pyproject.toml")
    assert not problems, "\n".join(problems)


def test_the_lock_holds_every_package_pyproject_names():
    locked = pinned(ROOT / "requirements.txt") | pinned(ROOT / "requirements-weights.txt")
    missing = sorted(set().union(*declared().values()) - locked)
    assert not missing, f"in pyproject.toml but not in requirements.txt or requirements-weights.txt: {missing}"


def test_serve_and_onnx_export_are_extras_and_the_rest_is_core():
    groups = declared()
    assert {"onnx", "onnxscript", "onnxruntime"} <= groups["export"]
    assert {"fastapi", "uvicorn", "python-multipart"} <= groups["serve"]
    assert {"peft", "cleanlab", "pandas", "pyarrow", "datasets"} <= groups["core"]
    assert not (groups["core"] & (groups["export"] | groups["serve"] | groups["offline"]))
