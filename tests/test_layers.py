"""Imports flow one way: each package may import only the layers below it.

common (errors) < metrics < models, input_pipelines < suite < tools, with flags read only by
suite.main. Read from the source with ast, so imports inside functions count too."""

import ast
import os

from tests.helpers import ROOT

# package -> the jaxperf packages it may import (itself always allowed).
ALLOWED = {
    "common": set(),
    "metrics": {"common"},
    "models": {"common", "metrics"},
    "input_pipelines": {"common", "metrics"},
    "flags": {"common"},
    "suite": {"common", "metrics", "models", "input_pipelines", "flags"},
    "tools": {"common", "metrics", "models", "input_pipelines", "flags", "suite"},
}


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_a_layer_above_it():
    upward = []
    for package, allowed in ALLOWED.items():
        for root, _, files in os.walk(os.path.join(ROOT, package)):
            for name in (f for f in files if f.endswith(".py")):
                path = os.path.join(root, name)
                for module in _imports(path) & (set(ALLOWED) - allowed - {package}):
                    upward.append(f"{os.path.relpath(path, ROOT)} imports {module}")
    assert not upward, upward


def test_the_check_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from suite import registry\n")
    assert "suite" in _imports(str(path))
