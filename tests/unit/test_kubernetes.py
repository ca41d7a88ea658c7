"""deploy/kubernetes: every object of every kustomization valid against the Kubernetes schemas
(kubernetes-validate, offline) or, for the Prometheus Operator's objects, against the schemas
vendored in tests/testdata/kubernetes; the probes, mounts, image and shards are right."""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.helpers import ROOT

K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes release still widely supported
CRD_SCHEMAS = ROOT / "tests" / "testdata" / "kubernetes"
CRD_KINDS = {"ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule"}
KUSTOMIZATIONS = {"base": K8S, "operator": K8S / "operator"}
Manifest = dict[str, Any]


def documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest(name: str) -> Manifest:
    (doc,) = documents(K8S / name)
    return doc


# -- a kustomize stand-in: resources (files and directories) and images: only ---------------


def render(directory: Path) -> list[Manifest]:
    """What `kustomize build directory` gives for the features these kustomizations use."""
    kustomization = manifest(str((directory / "kustomization.yaml").relative_to(K8S)))
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "images"}
    assert not unsupported, f"the test's kustomize stand-in does not apply {unsupported}"
    objects: list[Manifest] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        objects += render(path) if path.is_dir() else documents(path)
    for image in kustomization.get("images", []):
        for container in _containers(objects):
            _set_image(container, image)
    return objects


def _containers(objects: list[Manifest]) -> list[Manifest]:
    pods = [o["spec"]["template"]["spec"] for o in objects if "template" in o.get("spec", {})]
    return [c for pod in pods for c in pod.get("containers", []) + pod.get("initContainers", [])]


def _set_image(container: Manifest, image: Manifest) -> None:
    name, _, tag = container["image"].partition(":")
    if name != image["name"]:
        return
    new_tag = image.get("newTag", tag)
    container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")


def validate(obj: Manifest) -> None:
    """Raises if `obj` is not valid: strict Kubernetes schemas, or the vendored CRD schema."""
    if obj["kind"] in CRD_KINDS:
        schema = json.loads((CRD_SCHEMAS / f"{CRD_KINDS[obj['kind']]}.schema.json").read_text())
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def name_of(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", KUSTOMIZATIONS)
def test_every_rendered_object_is_valid(which: str) -> None:
    objects = render(KUSTOMIZATIONS[which])
    assert objects
    for obj in objects:
        validate(obj)


def test_every_manifest_file_is_valid() -> None:
    """The files outside the kustomizations too: the sharded StatefulSet, the secret example."""
    files = sorted(K8S.rglob("*.yaml"))
    objects = [
        doc for path in files for doc in documents(path) if path.name != "kustomization.yaml"
    ]
    assert {"StatefulSet", "Secret", "ServiceMonitor", "PrometheusRule"} <= {
        o["kind"] for o in objects
    }
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize(
    ("path", "change"),
    [
        (("spec", "replicas"), "one"),
        (("spec", "template", "spec", "containers", 0, "imagePullPolicy"), 1),
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGett"), {}),
    ],
)
def test_the_kubernetes_validator_refuses_a_broken_deployment(
    path: tuple[str | int, ...], change: object
) -> None:
    broken = copy.deepcopy(manifest("base/deployment.yaml"))
    _put(broken, path, change)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


@pytest.mark.parametrize(
    ("file", "path", "change"),
    [
        ("operator/servicemonitor.yaml", ("spec", "endpoints", 0, "intervall"), "30s"),
        ("operator/servicemonitor.yaml", ("spec", "endpoints", 0, "interval"), "30 seconds"),
        ("operator/prometheusrule.yaml", ("spec", "groups", 0, "rules", 0, "alert"), "Both"),
        ("operator/prometheusrule.yaml", ("spec", "groups", 0, "rules", 0, "expr"), None),
    ],
)
def test_the_crd_schemas_refuse_broken_objects(
    file: str, path: tuple[str | int, ...], change: object
) -> None:
    broken = copy.deepcopy(manifest(file))
    _put(broken, path, change)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def _put(obj: Any, path: tuple[str | int, ...], value: object) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not here")
@pytest.mark.parametrize("which", KUSTOMIZATIONS)
def test_the_stand_in_renders_what_kustomize_renders(which: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZATIONS[which])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    ours = {name_of(o): o for o in render(KUSTOMIZATIONS[which])}
    theirs = {name_of(o): o for o in yaml.safe_load_all(result.stdout)}
    assert ours == theirs


def test_only_the_overlay_needs_the_prometheus_operator() -> None:
    base = {o["apiVersion"] for o in render(K8S)}
    assert not any(api.startswith("monitoring.coreos.com/") for api in base)
    overlay = {o["kind"] for o in render(K8S / "operator")}
    assert {"ServiceMonitor", "PrometheusRule", "Deployment", "Service"} <= overlay


def test_the_image_is_the_one_the_docs_build() -> None:
    texts = [
        p.read_text() for p in [ROOT / "Dockerfile", *ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md")]
    ]
    built = {m for text in texts for m in re.findall(r"docker build -t (\S+) \.", text)}
    assert built, "no `docker build -t NAME .` in the Dockerfile or the docs"
    expected = {name if ":" in name else f"{name}:latest" for name in built}
    for directory in KUSTOMIZATIONS.values():
        assert {c["image"] for c in _containers(render(directory))} == expected
    (image,) = manifest("base/kustomization.yaml")["images"]
    assert (
        image["name"]
        == manifest("base/deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_prometheusrule_groups_are_the_rule_file() -> None:
    rules = yaml.safe_load((ROOT / "prometheus" / "mudbase-rules.yml").read_text())
    assert manifest("operator/prometheusrule.yaml")["spec"]["groups"] == rules["groups"]
    result = subprocess.run(
        [sys.executable, str(K8S / "build_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_deployment_probes_secret_and_resources() -> None:
    spec = manifest("base/deployment.yaml")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["resources"]["requests"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = yaml.safe_load(manifest("base/configmap.yaml")["data"]["config.yaml"])
    token_file = config["mudbase"]["token_file"]
    assert token_file.startswith(mounts["token"] + "/")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert (
        volumes["token"]["secret"]["secretName"]
        == manifest("secret.example.yaml")["metadata"]["name"]
    )
    assert "token" in manifest("secret.example.yaml")["stringData"]


def test_service_monitor_scrapes_the_service_as_job_mudbase() -> None:
    service = manifest("base/service.yaml")
    monitor = manifest("operator/servicemonitor.yaml")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert {"targetLabel": "job", "replacement": "mudbase"} in endpoint["relabelings"]


def test_sharded_statefulset_names_a_headless_service_of_its_pods() -> None:
    objects = {o["kind"]: o for o in documents(K8S / "statefulset-sharded.yaml")}
    statefulset, service = objects["StatefulSet"], objects["Service"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = statefulset["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in ports}


def test_sharded_statefulset_derives_the_shard_from_the_pod_ordinal() -> None:
    objects = {o["kind"]: o for o in documents(K8S / "statefulset-sharded.yaml")}
    spec = objects["StatefulSet"]["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    script = container["args"][0]
    assert f"--total-shards={spec['replicas']}" in script
    assert '--shard="${POD_NAME##*-}"' in script
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name"
    echoed = subprocess.run(
        ["sh", "-c", script.replace("exec mudbase-exporter", "echo")],
        env={"POD_NAME": "mudbase-exporter-2"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--shard=2" in echoed.split()
