"""The shipped deployment files under deploy/ parse, fit together, and fit the server.

* HAProxy and nginx: the real binaries check the shipped files (``haproxy -c``,
  ``nginx -t``), and the files name the server's readiness path and the speaker key.
  (tests/test_fleet_balancers.py runs them with live servers.)
* Kubernetes: no cluster here, so the manifests are loaded as YAML and checked against a
  small schema (kinds, apiVersions, required fields, known container fields) and against
  each other and the server: selectors match the pod labels, probes and the Service reach
  a declared container port, the probes use the server's health paths, the port in the
  command is the container port, the pod's grace period outlasts the drain bound, the
  Ingress points at the Service and carries the WebSocket annotations. Every check is
  shown to catch one broken manifest.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_fleet import (
    HAPROXY_CFG,
    NGINX_CONF,
    balancer_binary,
    balancer_missing,
    free_port,
    render_haproxy,
    render_nginx,
)

from sdk.live.fleet import LIVE_PATH, READY_PATH, SPEAKER_PARAM

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes" / "gesturert.yaml"

API_VERSIONS = {"Deployment": "apps/v1", "Service": "v1", "Ingress": "networking.k8s.io/v1",
                "PodDisruptionBudget": "policy/v1"}
CONTAINER_FIELDS = {"name", "image", "command", "args", "ports", "readinessProbe",
                    "livenessProbe", "startupProbe", "resources", "env", "lifecycle",
                    "volumeMounts", "imagePullPolicy", "securityContext"}
PROBE_FIELDS = {"httpGet", "periodSeconds", "failureThreshold", "successThreshold",
                "timeoutSeconds", "initialDelaySeconds"}
WEBSOCKET_TIMEOUT_S = 3600  # as long as the balancers' tunnel timeouts in deploy/


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command[:-1] else None


def kubernetes_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every way the manifests do not fit together or do not fit the server; [] if none."""
    problems: list[str] = []
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in docs:
        kind = doc.get("kind")
        if kind not in API_VERSIONS:
            problems.append(f"unexpected kind {kind!r}")
            continue
        if doc.get("apiVersion") != API_VERSIONS[kind]:
            problems.append(f"{kind}: apiVersion {doc.get('apiVersion')!r}, "
                            f"expected {API_VERSIONS[kind]}")
        if not _get(doc, "metadata.name"):
            problems.append(f"{kind}: metadata.name missing")
        by_kind[kind] = doc
    for kind in ("Deployment", "Service", "Ingress"):
        if kind not in by_kind:
            problems.append(f"no {kind}")
    if problems:
        return problems
    deployment, service, ingress = by_kind["Deployment"], by_kind["Service"], by_kind["Ingress"]

    pod_labels = _get(deployment, "spec.template.metadata.labels") or {}
    selector = _get(deployment, "spec.selector.matchLabels") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        problems.append(f"Deployment selector {selector} does not match pod labels {pod_labels}")
    containers = _get(deployment, "spec.template.spec.containers") or []
    if len(containers) != 1:
        return [*problems, f"Deployment: expected one container, got {len(containers)}"]
    container = containers[0]
    for key in sorted(set(container) - CONTAINER_FIELDS):
        problems.append(f"container: unknown field {key!r}")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    command = [str(word) for word in container.get("command", []) + container.get("args", [])]
    if command[:2] != ["gesturert", "serve"]:
        problems.append(f"container command {command[:2]} is not `gesturert serve`")
    if _option(command, "--host") != "0.0.0.0":
        problems.append("serve must listen on --host 0.0.0.0 in a pod")
    port = _option(command, "--port")
    if port is None or int(port) not in ports.values():
        problems.append(f"serve --port {port} is not a declared containerPort {ports}")

    def port_ok(ref: Any) -> bool:
        return ref in ports or ref in ports.values()

    for probe, path in (("readinessProbe", READY_PATH), ("livenessProbe", LIVE_PATH)):
        spec = container.get(probe)
        if not isinstance(spec, dict):
            problems.append(f"container: no {probe}")
            continue
        for key in sorted(set(spec) - PROBE_FIELDS):
            problems.append(f"{probe}: unknown field {key!r}")
        if _get(spec, "httpGet.path") != path:
            problems.append(f"{probe} path {_get(spec, 'httpGet.path')!r}, the server's is {path}")
        if not port_ok(_get(spec, "httpGet.port")):
            problems.append(f"{probe} port {_get(spec, 'httpGet.port')!r} is not a container port")
    drain = _option(command, "--drain-seconds")
    grace = _get(deployment, "spec.template.spec.terminationGracePeriodSeconds")
    if drain is None or grace is None or not float(grace) > float(drain):
        problems.append(f"terminationGracePeriodSeconds {grace} must exceed --drain-seconds "
                        f"{drain}, or Kubernetes kills streams still draining")

    service_selector = _get(service, "spec.selector") or {}
    if not service_selector or any(pod_labels.get(k) != v for k, v in service_selector.items()):
        problems.append(f"Service selector {service_selector} matches no pod ({pod_labels})")
    service_ports = _get(service, "spec.ports") or []
    for sp in service_ports:
        if not port_ok(sp.get("targetPort")):
            problems.append(f"Service targetPort {sp.get('targetPort')!r} is not a container port")

    name = _get(deployment, "metadata.name")
    backends = [_get(path, "backend.service") for rule in _get(ingress, "spec.rules") or []
                for path in _get(rule, "http.paths") or []]
    if not backends:
        problems.append("Ingress has no backend")
    for backend in backends:
        if _get(backend, "name") != _get(service, "metadata.name"):
            problems.append(f"Ingress backend {_get(backend, 'name')!r} is not the Service "
                            f"{_get(service, 'metadata.name')!r} ({name})")
        port_ref = _get(backend, "port.name") or _get(backend, "port.number")
        if port_ref not in {p.get("name") for p in service_ports} | {
                p.get("port") for p in service_ports}:
            problems.append(f"Ingress backend port {port_ref!r} is not a Service port")
    notes = _get(ingress, "metadata.annotations") or {}
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = notes.get(f"nginx.ingress.kubernetes.io/{key}")
        if value is None or int(value) < WEBSOCKET_TIMEOUT_S:
            problems.append(f"Ingress {key} {value!r}: a WebSocket needs >= {WEBSOCKET_TIMEOUT_S}")
    if notes.get("nginx.ingress.kubernetes.io/upstream-hash-by") != f"$arg_{SPEAKER_PARAM}":
        problems.append(f"Ingress does not hash on the speaker key ($arg_{SPEAKER_PARAM})")
    if "http_503" not in notes.get("nginx.ingress.kubernetes.io/proxy-next-upstream", ""):
        problems.append("Ingress does not retry a handshake refused with 503 (draining pod)")
    return problems


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(K8S.read_text()) if doc is not None]


def test_the_shipped_manifests_fit_together_and_fit_the_server(
        manifests: list[dict[str, Any]]) -> None:
    assert kubernetes_problems(manifests) == []


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _doc(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def _set_option(docs: list[dict[str, Any]], name: str, value: str) -> None:
    command = _container(docs)["command"]
    command[command.index(name) + 1] = value


BREAKAGES = {
    "wrong apiVersion": (lambda d: _doc(d, "Deployment").update(apiVersion="apps/v1beta1"),
                         "apiVersion"),
    "selector off": (lambda d: _doc(d, "Deployment")["spec"]["selector"]["matchLabels"].update(
        {"app.kubernetes.io/name": "other"}), "does not match pod labels"),
    "typo in a field": (lambda d: _container(d).update(readinessprobe={}), "unknown field"),
    "readiness on the liveness path": (
        lambda d: _container(d)["readinessProbe"]["httpGet"].update(path=LIVE_PATH),
        "readinessProbe path"),
    "probe on an undeclared port": (
        lambda d: _container(d)["livenessProbe"]["httpGet"].update(port="metrics"),
        "livenessProbe port"),
    "port in command differs": (lambda d: _set_option(d, "--port", "9000"), "containerPort"),
    "loopback in a pod": (lambda d: _set_option(d, "--host", "127.0.0.1"), "0.0.0.0"),
    "grace shorter than drain": (lambda d: _set_option(d, "--drain-seconds", "60"),
                                 "terminationGracePeriodSeconds"),
    "service selects nothing": (lambda d: _doc(d, "Service")["spec"].update(
        selector={"app": "x"}), "Service selector"),
    "ingress to another service": (
        lambda d: _doc(d, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"][
            "service"].update(name="web"), "Ingress backend"),
    "short websocket timeout": (lambda d: _doc(d, "Ingress")["metadata"]["annotations"].update(
        {"nginx.ingress.kubernetes.io/proxy-read-timeout": "60"}), "proxy-read-timeout"),
    "no speaker hashing": (lambda d: _doc(d, "Ingress")["metadata"]["annotations"].pop(
        "nginx.ingress.kubernetes.io/upstream-hash-by"), "speaker key"),
    "no service": (lambda d: d.remove(_doc(d, "Service")), "no Service"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_check_catches_a_broken_manifest(manifests: list[dict[str, Any]],
                                              breakage: str) -> None:
    docs = copy.deepcopy(manifests)
    mutate, expected = BREAKAGES[breakage]
    mutate(docs)
    problems = kubernetes_problems(docs)
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------- balancer configs
def test_balancer_configs_name_the_readiness_path_and_the_speaker_key() -> None:
    haproxy = HAPROXY_CFG.read_text()
    assert re.search(rf"option httpchk GET {re.escape(READY_PATH)}\s", haproxy)
    assert f"balance url_param {SPEAKER_PARAM}\n" in haproxy
    assert re.search(r"timeout tunnel 1h", haproxy)
    nginx = NGINX_CONF.read_text()
    assert f"map $arg_{SPEAKER_PARAM} $gesturert_hash_key" in nginx
    assert f"proxy_read_timeout {WEBSOCKET_TIMEOUT_S}s;" in nginx


def test_haproxy_accepts_the_shipped_config(tmp_path: Path) -> None:
    reason = balancer_missing("haproxy")
    if reason:
        pytest.skip(reason)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy(free_port(), free_port(), [("a", 9001), ("b", 9002)]))
    haproxy = str(balancer_binary("haproxy"))
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    cfg.write_text(cfg.read_text().replace("timeout tunnel 1h", "timeout tunel 1h"))
    broken = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True,
                            timeout=30)
    assert broken.returncode != 0  # the check can fail


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    reason = balancer_missing("nginx")
    if reason:
        pytest.skip(reason)
    conf = tmp_path / "nginx.conf"

    def nginx_t() -> subprocess.CompletedProcess[str]:
        nginx = str(balancer_binary("nginx"))
        return subprocess.run([nginx, "-t", "-e", str(tmp_path / "error.log"), "-p",
                               str(tmp_path), "-c", str(conf)], capture_output=True, text=True,
                              timeout=30)

    conf.write_text(render_nginx(free_port(), [("a", 9001), ("b", 9002)], tmp_path))
    check = nginx_t()
    assert check.returncode == 0, check.stdout + check.stderr
    snippet = tmp_path / "gesturert.conf"
    snippet.write_text(snippet.read_text().replace("proxy_read_timeout", "proxy_reed_timeout"))
    assert nginx_t().returncode != 0  # the check can fail


def test_render_refuses_a_config_without_the_lines_it_rewrites() -> None:
    with pytest.raises(ValueError, match="server"):
        render_haproxy(1, 2, [("a", 3)], shipped="frontend f\n    bind :80\n"
                       "listen stats\n    bind 127.0.0.1:8404\n")
