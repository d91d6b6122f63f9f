"""Derive the KubeRay field schemas that cluster/check.py validates RayCluster/RayJob manifests against.

    python cluster/kuberay/crd/derive.py KUBERAY_CHECKOUT [TAG]    # TAG default: v1.5.1

Reads ray-operator/config/crd/bases/ray.io_{rayclusters,rayjobs}.yaml of a ray-project/kuberay checkout at
TAG (git show, no network) and writes ray.io_<kind>.<TAG>.schema.json beside this file: the v1
openAPIV3Schema without descriptions, every pod template reduced to an object (cluster/check.py checks
those as core PodTemplateSpecs with kubernetes-validate), int-or-string as anyOf, and
additionalProperties: false wherever the CRD lists properties, so that an unknown or misspelt field is an
error here instead of being pruned silently by the API server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
KINDS = ("rayclusters", "rayjobs")
POD_TEMPLATE = {"type": "object", "x-clasp-pod-template": True}


def _is_pod_template(schema: dict) -> bool:
    props = schema.get("properties") or {}
    spec = (props.get("spec") or {}).get("properties") or {}
    return "metadata" in props and "containers" in spec


def convert(schema: dict) -> dict:
    """One openAPIV3Schema node as strict JSON Schema (draft 7)."""
    if _is_pod_template(schema):
        return dict(POD_TEMPLATE)
    out = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(v) for v in value]
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def derive(checkout: Path, tag: str) -> list[Path]:
    written = []
    for kind in KINDS:
        rel = f"ray-operator/config/crd/bases/ray.io_{kind}.yaml"
        crd = yaml.safe_load(
            subprocess.run(
                ["git", "-C", str(checkout), "show", f"{tag}:{rel}"], check=True, capture_output=True, text=True
            ).stdout
        )
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = {
            "$comment": f"Derived from ray-project/kuberay {tag} {rel} (Apache License 2.0, Copyright The "
            "KubeRay Authors; LICENSE.kuberay beside this file) by derive.py beside this file.",
            "x-kuberay-version": tag,
            **convert(v1["schema"]["openAPIV3Schema"]),
        }
        path = HERE / f"ray.io_{kind}.{tag}.schema.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    for p in derive(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "v1.5.1"):
        print(p, p.stat().st_size)
