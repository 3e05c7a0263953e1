#!/usr/bin/env python3
"""Offline checks of the deployment files (run by scripts/test.sh through deploy/check.sh).

* Kubernetes manifests validate (strict) against the Kubernetes JSON schemas bundled with
  kubernetes-validate (PyPI), and hang together: probes, non-root pods, a PodDisruptionBudget per
  Deployment, an HPA for the processors, a migration Job, every Secret/ConfigMap key they name exists.
* The compose file parses and runs PostgreSQL, an S3-compatible store, two orchestrators, two
  processors and the gateway, each Atelier service with a health check.
* The Dockerfile is multi-stage, runs as a non-root user, has a health check, and builds exactly the
  workspace's service and CLI binaries (from `cargo metadata`).
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def ok(message):
    print(f"ok   {message}")


def validate(paths):
    """kubernetes-validate --strict; returns (passed, output)."""
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--no-warn", *map(str, paths)],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0, done.stdout + done.stderr


def check_kubernetes():
    paths = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    if not paths:
        fail("no manifests in deploy/kubernetes")
        return
    passed, output = validate(paths)
    if passed:
        ok(f"{len(paths)} manifest files validate against the Kubernetes schemas")
    else:
        fail(f"manifests do not validate:\n{output}")
    # The validator must be able to fail: a manifest with a wrong type is refused.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as broken:
        broken.write(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\n"
            "spec: {replicas: two, selector: {matchLabels: {a: b}}, template: "
            "{metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}\n"
        )
    passed, _ = validate([broken.name])
    pathlib.Path(broken.name).unlink()
    if passed:
        fail("the validator accepted a Deployment with `replicas: two`")
    else:
        ok("the validator refuses a broken manifest")

    docs = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    secrets = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {})) for s in by_kind.get("Secret", [])}
    configs = {c["metadata"]["name"]: set(c.get("data", {})) for c in by_kind.get("ConfigMap", [])}
    deployments = by_kind.get("Deployment", [])
    commands = set()
    for dep in deployments:
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"{name}: pods must run as non-root")
        for c in pod["containers"]:
            commands.add(c["command"][0])
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    fail(f"{name}/{c['name']}: no {probe}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], set()):
                    fail(f"{name}: env {e['name']} names missing secret key {ref['name']}/{ref['key']}")
            for src in c.get("envFrom", []):
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    fail(f"{name}: envFrom names missing Secret {src['secretRef']['name']}")
                if "configMapRef" in src and src["configMapRef"]["name"] not in configs:
                    fail(f"{name}: envFrom names missing ConfigMap {src['configMapRef']['name']}")
        pdbs = [
            p for p in by_kind.get("PodDisruptionBudget", [])
            if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
        ]
        if not pdbs:
            fail(f"{name}: no PodDisruptionBudget selects its pods")
        services = [
            s for s in by_kind.get("Service", [])
            if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]
        if not services:
            fail(f"{name}: no Service selects its pods")
    wanted = {"atelier-orchestrator", "atelier-processor", "atelier-gateway"}
    if commands != wanted:
        fail(f"Deployments run {sorted(commands)}, expected {sorted(wanted)}")
    hpas = [h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", [])]
    if "atelier-processor" not in hpas:
        fail("no HorizontalPodAutoscaler scales the processors")
    jobs = [j for j in by_kind.get("Job", []) if j["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "migrate"]
    if not jobs:
        fail("no Job runs the migrations")
    if not failures:
        ok("deployments have probes, services, disruption budgets; processors autoscale; migrations run as a Job")
    return commands


def check_compose():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose.get("services", {})
    def runs(binary, arg=None):
        return [
            n for n, s in services.items()
            if (s.get("command") or [None])[0] == binary and (arg is None or arg in s.get("command", []))
        ]
    expected = {
        "orchestrators": (runs("atelier-orchestrator", "serve"), 2),
        "processors": (runs("atelier-processor"), 2),
        "gateways": (runs("atelier-gateway"), 1),
    }
    for what, (found, count) in expected.items():
        if len(found) != count:
            fail(f"compose runs {len(found)} {what} ({found}), expected {count}")
    images = " ".join(str(s.get("image", "")) for s in services.values())
    if "postgres" not in images:
        fail("compose runs no PostgreSQL")
    if not any(x in images for x in ("minio", "garage", "s3")):
        fail("compose runs no S3-compatible store")
    if not runs("atelier-orchestrator", "migrate"):
        fail("compose runs no migration")
    for name, s in services.items():
        command = (s.get("command") or [""])[0]
        if command in ("atelier-orchestrator", "atelier-processor", "atelier-gateway") and "migrate" not in s.get("command", []):
            test = s.get("healthcheck", {}).get("test", [])
            if "atelier" not in test or "health" not in test:
                fail(f"compose service {name} has no `atelier health` check")
        for dep in (s.get("depends_on") or {}):
            if dep not in services:
                fail(f"compose service {name} depends on unknown {dep}")
    dockerfile = services["gateway"].get("build", {}).get("dockerfile")
    if not dockerfile or not (ROOT / dockerfile).is_file():
        fail(f"compose builds from {dockerfile!r}, which does not exist")
    if not failures:
        ok(f"compose parses: {len(services)} services, 2 orchestrators, 2 processors, a gateway, PostgreSQL and S3")


def workspace_binaries():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout)
    found = set()
    for package in meta["packages"]:
        path = pathlib.Path(package["manifest_path"]).relative_to(ROOT)
        if path.parts[0] not in ("services", "crates"):
            continue  # benchmarks and fuzzing are not shipped
        for target in package["targets"]:
            if "bin" in target["kind"]:
                found.add(target["name"])
    return found


def check_dockerfile(commands):
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s", text, re.M)
    if len(stages) < 2:
        fail("the Dockerfile is not multi-stage")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("the Dockerfile's final stage does not run as a non-root user")
    if not re.search(r"^HEALTHCHECK\s", text, re.M):
        fail("the Dockerfile has no HEALTHCHECK")
    match = re.search(r'^ARG BINARIES="([^"]*)"', text, re.M)
    listed = set(match.group(1).split()) if match else set()
    binaries = workspace_binaries()
    if listed != binaries:
        fail(f"Dockerfile builds {sorted(listed)}, the workspace's binaries are {sorted(binaries)}")
    missing = (commands | {"atelier"}) - listed
    if missing:
        fail(f"manifests run binaries the image lacks: {sorted(missing)}")
    if not failures:
        ok(f"Dockerfile: multi-stage, non-root, health check, binaries {sorted(listed)}")


def main():
    commands = check_kubernetes() or set()
    check_compose()
    check_dockerfile(commands)
    if failures:
        print(f"{len(failures)} deployment check(s) failed")
        return 1
    print("deployment files: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
