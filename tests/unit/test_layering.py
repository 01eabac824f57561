"""The package layout docs/architecture.md describes, enforced on every import statement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> module prefixes it must not import
FORBIDDEN = {
    "features": ("streams", "online_models", "faust", "aiokafka", "redis"),
    "online_models": ("streams", "faust", "aiokafka", "redis"),
    "streams/adapters": ("streams.worker", "streams.api", "streams.tools"),
    "streams/api": ("streams.worker", "streams.tools"),
    "streams/worker": ("streams.tools",),
}


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_its_layer_may(package):
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imports(path)
        if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[package])
    ]
    assert bad == []
