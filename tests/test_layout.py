"""The repository root is the data flow, and imports follow it one way.

schemas ← connectors, streams ← sinks ← dashboards ← vigie (the composition root): a stage
never imports a later stage or the composition root, so each can be read, tested and
deployed knowing only what comes before it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# What each top-level package may import from the project (besides itself).
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "connectors": {"schemas"},
    "streams": {"schemas"},
    "sinks": {"schemas", "streams"},
    "dashboards": {"schemas", "streams", "sinks"},
    "vigie": {"schemas", "connectors", "streams", "sinks", "dashboards"},
}


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_project_imports(path) - ALLOWED[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_root_shows_the_flow() -> None:
    for folder in ("schemas/avro", "connectors", "streams", "sinks", "dashboards/grafana", "tests"):
        assert (ROOT / folder).is_dir(), folder
    assert list((ROOT / "schemas" / "avro").glob("*.avsc")), "the Avro contracts live in schemas/avro/"
    assert not (ROOT / "vigie" / "streams").exists()
