"""No pickle is ever loaded: every torch.load in the package passes weights_only=True."""

from __future__ import annotations

import ast
from pathlib import Path

import headstart

PACKAGE = Path(headstart.__file__).parent


def torch_load_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]


def test_every_torch_load_is_weights_only():
    calls = {f: torch_load_calls(f) for f in PACKAGE.rglob("*.py")}
    assert sum(len(c) for c in calls.values()) >= 2  # mobilenet_v2 and efficientnet_lite load .pth files
    for path, found in calls.items():
        for call in found:
            flags = {k.arg: k.value for k in call.keywords}
            assert (
                "weights_only" in flags
                and isinstance(flags["weights_only"], ast.Constant)
                and flags["weights_only"].value is True
            ), f"{path}:{call.lineno} torch.load without weights_only=True"
