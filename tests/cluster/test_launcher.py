"""The documented launcher-side install (requirements/launcher.txt) holds everything Ray's AWS and GCP node
providers import: each provider class imports, and every distribution its modules load is one of the file's
pins or a dependency of one."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "requirements" / "launcher.txt"
_IMPORT_PROVIDERS = """
import json
from ray.autoscaler._private.providers import _get_node_provider_cls
print(json.dumps([_get_node_provider_cls({"type": p}).__name__ for p in ("aws", "gcp")]))
"""


def launcher_pins(text: str) -> list[Requirement]:
    return [Requirement(line.split("#", 1)[0].strip()) for line in text.splitlines() if line.split("#", 1)[0].strip()]


def closure(requirements: list[Requirement]) -> set[str]:
    """The installed distributions these requirements pull in (extras followed, markers evaluated)."""
    seen, todo = set(), [(r, tuple(r.extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in metadata.requires(req.name) or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((dep, tuple(dep.extras)))
    return {name for name, _ in seen}


def provider_distributions() -> tuple[list[str], set[str]]:
    """(the provider classes, imported in a fresh interpreter; the distributions of every top-level module that
    Ray's aws/ and gcp/ launcher packages import)."""
    import ray

    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROVIDERS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = set()
    for source in (Path(ray.__file__).parent / "autoscaler" / "_private").glob("[ag][wc][sp]/*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    owners = _module_files()
    dists = set()
    for module in modules:
        path = module.replace(".", "/")
        dists |= {owners[f] for f in (f"{path}.py", f"{path}/__init__.py") if f in owners}
    return json.loads(proc.stdout.strip().splitlines()[-1]), dists - {"ray"}


def _module_files() -> dict[str, str]:
    """Installed module file (relative to site-packages) -> the distribution that ships it, so that namespace
    packages such as google.* resolve to the distribution of their own part."""
    return {
        str(file): canonicalize_name(dist.metadata["Name"])
        for dist in metadata.distributions()
        for file in dist.files or []
        if str(file).endswith(".py")
    }


def missing_from(text: str, needed: set[str]) -> set[str]:
    return needed - closure(launcher_pins(text))


def test_both_node_providers_import_from_the_launcher_requirements():
    text = LAUNCHER.read_text()
    for req in launcher_pins(text):  # the pins are what this environment runs
        assert str(req.specifier).startswith("=="), f"{req}: pin the launcher side exactly"
        assert metadata.version(req.name) == str(req.specifier)[2:], req
    classes, needed = provider_distributions()
    assert classes == ["AWSNodeProvider", "GCPNodeProvider"]
    assert {"boto3", "google-api-python-client", "google-auth-httplib2", "httplib2"} <= needed
    assert missing_from(text, needed) == set()
    # Broken on purpose: without the GCP client (or boto3) the launcher side cannot import its provider.
    assert "google-api-python-client" in missing_from(re.sub(r"(?m)^google-api-python-client.*$", "", text), needed)
    assert "boto3" in missing_from(re.sub(r"(?m)^boto3.*$", "", text), needed)
    assert "requirements/launcher.txt" in (ROOT / "docs" / "cluster.md").read_text()
