"""pyproject.toml declares every third-party package that the code under clasp_dist/ imports (at module level or
lazily inside a function), as a dependency or in an optional extra."""

from __future__ import annotations

import ast
import importlib.metadata
import sys

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO


def declared_distributions() -> dict[str, str]:
    """Canonical distribution name -> where pyproject.toml declares it ('dependencies' or 'extra <name>')."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = {canonicalize_name(Requirement(r).name): "dependencies" for r in project["dependencies"]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for r in reqs:
            out.setdefault(canonicalize_name(Requirement(r).name), f"extra {extra}")
    return out


def imported_modules() -> dict[str, str]:
    """Top-level third-party module -> the first file importing it."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "clasp_dist").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "clasp_dist":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_declared():
    declared = declared_distributions()
    providers = importlib.metadata.packages_distributions()
    modules = imported_modules()
    assert {"torch", "ray", "gcsfs", "boto3"} <= set(modules)  # the scan sees lazy imports too
    missing = {}
    for module, where in modules.items():
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & set(declared):
            missing[module] = f"{where} (distribution {sorted(dists) or 'not installed'})"
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert declared["gcsfs"] == "extra gcs"
