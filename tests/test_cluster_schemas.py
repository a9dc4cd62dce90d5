"""Cluster manifests against the real schemas, strict on unknown fields.

* ``cluster/kuberay/*.yaml`` against KubeRay's own CRD schemas (``ray.io/v1``; copies in
  ``tests/schemas/kuberay/`` with their origin, since CI has no ``../shared``). The API server
  silently drops a field it does not know, so a misspelt key (``rayStartParam``,
  ``shutdownAfterJobFinish``) would deploy without the setting; here it fails.
* ``cluster/ray-cluster-a100.yaml`` against Ray's ``ray/autoscaler/ray-schema.json`` (the
  schema ``ray up`` validates with), from the installed ray package.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "kuberay"
# ../shared beside the main checkout; a git worktree sits one level deeper.
SHARED_CRDS = next((d for d in (ROOT.parent / "shared" / "kuberay_crds",
                                ROOT.parents[1] / "shared" / "kuberay_crds") if d.is_dir()),
                   ROOT.parent / "shared" / "kuberay_crds")
KUBERAY = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
LAUNCHER = ROOT / "cluster" / "ray-cluster-a100.yaml"
KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}


def strict_openapi(schema: dict) -> dict:
    """An openAPIV3Schema (Kubernetes flavour) as a JSON Schema the way the API server reads it.

    ``x-kubernetes-int-or-string`` -> integer or string; ``nullable`` -> null allowed; objects
    with ``properties`` and no ``x-kubernetes-preserve-unknown-fields`` are closed.
    """
    def conv(node):
        if isinstance(node, list):
            return [conv(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: conv(v) for k, v in node.items()}
        if out.pop("x-kubernetes-int-or-string", False):
            out.pop("type", None)
            out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if out.pop("nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if ("properties" in out and not out.get("x-kubernetes-preserve-unknown-fields")
                and "additionalProperties" not in out):
            out["additionalProperties"] = False
        return out

    return conv(schema)


@lru_cache(maxsize=None)
def kuberay_validator(kind: str) -> jsonschema.Draft7Validator:
    raw = json.loads((SCHEMAS / f"{kind}.v1.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(strict_openapi(raw))


@lru_cache(maxsize=None)
def ray_launcher_validator() -> jsonschema.Draft7Validator:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return jsonschema.Draft7Validator(json.loads(path.read_text(encoding="utf-8")))


def errors(validator: jsonschema.Validator, doc: dict) -> list[str]:
    """Every violation as ``path: message`` (all of them, not just the first)."""
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                  for e in validator.iter_errors(doc))


def _kuberay_docs() -> list[tuple[str, dict]]:
    out = []
    for p in KUBERAY:
        for i, d in enumerate(yaml.safe_load_all(p.read_text())):
            if d is not None:
                out.append((f"{p.name}#{i}", d))
    return out


def test_every_manifest_is_checked():
    docs = _kuberay_docs()
    assert len(KUBERAY) >= 4 and {d["kind"] for _, d in docs} == set(KINDS)


@pytest.mark.parametrize("name,doc", _kuberay_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_kuberay_manifest_matches_the_crd_schema(name, doc):
    assert doc.get("apiVersion") == "ray.io/v1", name
    assert errors(kuberay_validator(doc["kind"]), doc) == [], name


def test_launcher_yaml_matches_rays_own_schema():
    doc = yaml.safe_load(LAUNCHER.read_text())
    assert errors(ray_launcher_validator(), doc) == []


def test_launcher_yaml_passes_ray_up_own_checks():
    """What ``ray up`` runs before anything else: defaults filled in, then validated
    (schema plus cross-field checks such as head_node_type naming a node type)."""
    from ray.autoscaler._private.util import prepare_config, validate_config  # ray up's path

    doc = yaml.safe_load(LAUNCHER.read_text())
    validate_config(prepare_config(copy.deepcopy(doc)))
    doc["head_node_type"] = "no-such-type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(doc))


def _first(docs, kind):
    return copy.deepcopy(next(d for _, d in docs if d["kind"] == kind))


def test_an_injected_unknown_or_wrong_field_is_caught():
    """The check can fail: typos at every level, a wrong type, in both schema families."""
    docs = _kuberay_docs()
    job = _first(docs, "RayJob")
    job["spec"]["shutdownAfterJobFinish"] = True  # misspelt shutdownAfterJobFinishes
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    head["rayStartParam"] = {"num-cpus": "0"}  # misspelt rayStartParams
    head["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # inside the pod
    got = errors(kuberay_validator("RayJob"), job)
    assert any("'shutdownAfterJobFinish' was unexpected" in e for e in got), got
    assert any("headGroupSpec: " in e and "'rayStartParam' was unexpected" in e for e in got), got
    assert any("containers.0" in e and "'imagePullPolcy' was unexpected" in e for e in got), got

    svc = _first(docs, "RayService")
    svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert any("replicas" in e for e in errors(kuberay_validator("RayService"), svc))
    # An int-or-string quantity stays valid both ways (the conversion is not too strict).
    cl = _first(docs, "RayCluster")
    res = cl["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].setdefault(
        "resources", {}).setdefault("limits", {})
    res["cpu"] = 2
    res["memory"] = "8Gi"
    assert errors(kuberay_validator("RayCluster"), cl) == []
    # Labels and annotations are free-form maps: not closed by the conversion.
    cl["metadata"].setdefault("labels", {})["anything-goes"] = "yes"
    cl["spec"]["headGroupSpec"]["template"].setdefault("metadata", {})["annotations"] = {"a": "b"}
    assert errors(kuberay_validator("RayCluster"), cl) == []

    launcher = yaml.safe_load(LAUNCHER.read_text())
    launcher["idle_timeout_minute"] = 5
    launcher["available_node_types"]["head"]["min_worker"] = 0
    launcher["docker"]["imag"] = "x"
    got = errors(ray_launcher_validator(), launcher)
    assert any("'idle_timeout_minute' was unexpected" in e for e in got), got
    assert any("available_node_types.head" in e and "'min_worker' was unexpected" in e
               for e in got), got
    assert any("docker" in e and "'imag' was unexpected" in e for e in got), got


@pytest.mark.skipif(not SHARED_CRDS.is_dir(), reason="../shared/kuberay_crds not present (CI)")
def test_schema_copies_equal_the_crds_they_came_from():
    for kind, plural in KINDS.items():
        crd = yaml.load((SHARED_CRDS / f"ray.io_{plural}.yaml").read_text(),
                        Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        assert crd["spec"]["names"]["kind"] == kind
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        ours = json.loads((SCHEMAS / f"{kind}.v1.json").read_text(encoding="utf-8"))
        assert ours == v1["schema"]["openAPIV3Schema"], kind
