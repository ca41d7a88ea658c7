"""deploy/kubernetes: the manifests parse, the probes and mounts are right, one rule source."""

import subprocess
import sys
from typing import Any

import yaml

from tests.helpers import ROOT

K8S = ROOT / "deploy" / "kubernetes"


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / name).read_text())
    return data


def test_prometheusrule_groups_are_the_rule_file() -> None:
    rules = yaml.safe_load((ROOT / "prometheus" / "mudbase-rules.yml").read_text())
    assert manifest("prometheusrule.yaml")["spec"]["groups"] == rules["groups"]
    result = subprocess.run(
        [sys.executable, str(K8S / "build_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_deployment_probes_secret_and_resources() -> None:
    spec = manifest("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["resources"]["requests"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = yaml.safe_load(manifest("configmap.yaml")["data"]["config.yaml"])
    token_file = config["mudbase"]["token_file"]
    assert token_file.startswith(mounts["token"] + "/")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert (
        volumes["token"]["secret"]["secretName"]
        == manifest("secret.example.yaml")["metadata"]["name"]
    )
    assert "token" in manifest("secret.example.yaml")["stringData"]


def test_service_monitor_scrapes_the_service_as_job_mudbase() -> None:
    service = manifest("service.yaml")
    monitor = manifest("servicemonitor.yaml")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert {"targetLabel": "job", "replacement": "mudbase"} in endpoint["relabelings"]


def test_kustomization_lists_existing_files() -> None:
    for resource in manifest("kustomization.yaml")["resources"]:
        assert (K8S / resource).exists(), resource


def test_sharded_statefulset_derives_the_shard_from_the_pod_ordinal() -> None:
    spec = manifest("statefulset-sharded.yaml")["spec"]
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
