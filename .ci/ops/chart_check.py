#!/usr/bin/env python3
"""Lints and renders helm/courier with real Helm (helm-python-sdk: Helm 4's SDK through
libhelm_c, no cluster), validates every rendered manifest against the Kubernetes schemas
(kubernetes-validate, strict), and checks what the chart promises: probes, security context,
SQLite vs PostgreSQL wiring, courier.toml, the TLS and tokens Secrets, enableServiceLinks:
false, and the refusal to render an unauthenticated Courier unless allowed. Writes the rendered manifests (like `helm template`)
under --out (CASE.yaml), and each render's courier.toml (CASE.courier.toml), which
.ci/ops-checks loads in the real binary.

Exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "courier"
RELEASE, NAMESPACE = "courier", "courier"
# The chart's kubeVersion floor (native gRPC probes) and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ["1.27.0", kv.latest_version()]
# Custom resources: no built-in schema; validated only for shape by the assertions below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

failures: list[str] = []


def check(condition: bool, what: str) -> None:
    if condition:
        print(f"    ok: {what}")
    else:
        print(f"    FAILED: {what}")
        failures.append(what)


def load_values(*files: str, overrides: dict | None = None) -> dict:
    values: dict = {}
    for name in files:
        values = deep_merge(values, helm.values_from_yaml((CHART / name).read_text()))
    return deep_merge(values, overrides or {})


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lint(case: str, values: dict) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"severity": 3, "path": "", "error": e} for e in report["errors"]
    ]
    for message in problems:
        print(f"    lint: {message['path']}: {message['error']}")
    check(not problems, f"helm lint --strict ({case}): no warnings or errors")


def render(case: str, values: dict, out: Path) -> dict[tuple[str, str], dict]:
    """Renders like `helm template`; returns the manifests by (kind, name)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents = []
    text = []
    for template, manifest in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            check(RELEASE in manifest, f"NOTES.txt renders ({case})")
            continue
        for document in yaml.safe_load_all(manifest):
            if document:
                documents.append(document)
                text.append(f"---\n# Source: {template}\n{yaml.safe_dump(document, sort_keys=False)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{case}.yaml").write_text("".join(text))
    manifests = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    (out / f"{case}.courier.toml").write_text(manifests[("ConfigMap", RELEASE)]["data"]["courier.toml"])
    print(f"    rendered {len(documents)} manifests into {out / f'{case}.yaml'}, courier.toml beside")
    return manifests


def validate(case: str, manifests: dict[tuple[str, str], dict]) -> None:
    for (kind, name), document in sorted(manifests.items()):
        if (document["apiVersion"], kind) in CRD_KINDS:
            print(f"    skip: {kind}/{name} is a custom resource (no schema in kubernetes-validate)")
            continue
        valid = True
        for version in KUBE_VERSIONS:
            try:
                kv.validate(document, version, strict=True)
            except kv.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                check(False, f"{kind}/{name} against Kubernetes {version}: {path}: {error.message}")
                valid = False
            except kv.SchemaNotFoundError as error:
                check(False, f"{kind}/{name}: {error.message}")
                valid = False
        if valid:
            print(f"    valid: {kind}/{name} (strict, Kubernetes {', '.join(KUBE_VERSIONS)})")


def courier_toml(manifests) -> dict:
    return tomllib.loads(manifests[("ConfigMap", RELEASE)]["data"]["courier.toml"])


def container(manifests) -> dict:
    return manifests[("Deployment", RELEASE)]["spec"]["template"]["spec"]["containers"][0]


# Every render but the failing ones names a tokens Secret or allows unauthenticated calls.
TOKENS = {"auth": {"tokensSecret": "courier-tokens"}}


def common_checks(case: str, manifests, tls: bool = False) -> None:
    deployment = manifests[("Deployment", RELEASE)]
    pod = deployment["spec"]["template"]["spec"]
    main = container(manifests)
    if tls:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check(main[probe].get("tcpSocket") == {"port": 50051},
                  f"{probe} checks the port: kubelet gRPC probes cannot speak TLS ({case})")
    else:
        for probe in ("startupProbe", "readinessProbe"):
            check(main[probe].get("grpc") == {"port": 50051}, f"{probe} is a gRPC health probe on 50051 ({case})")
        check(
            main["livenessProbe"].get("grpc") == {"port": 50051, "service": "courier.liveness"},
            f"livenessProbe asks for courier.liveness, which does not follow the database ({case})",
        )
    check(pod.get("enableServiceLinks") is False,
          f"enableServiceLinks: false keeps COURIER_SERVICE_HOST & co. out of the pod ({case})")
    security = main["securityContext"]
    check(
        security["readOnlyRootFilesystem"] is True
        and security["allowPrivilegeEscalation"] is False
        and security["capabilities"]["drop"] == ["ALL"]
        and pod["securityContext"]["runAsNonRoot"] is True
        and pod["securityContext"]["runAsUser"] != 0,
        f"non-root, read-only root filesystem, every capability dropped ({case})",
    )
    check(bool(main["resources"].get("requests")), f"resource requests set ({case})")
    check(
        main["args"] == ["serve", "--config", "/etc/courier/courier.toml"]
        and any(m["mountPath"] == "/etc/courier" for m in main["volumeMounts"]),
        f"the ConfigMap's courier.toml is mounted and passed with --config ({case})",
    )
    config = courier_toml(manifests)
    check(config.get("listen") == "0.0.0.0:50051", f"courier.toml listens on 0.0.0.0:50051 ({case})")
    service_ports = {p["name"]: p["port"] for p in manifests[("Service", RELEASE)]["spec"]["ports"]}
    check(service_ports.get("grpc") == 50051, f"the Service exposes grpc 50051 ({case})")
    check(("PodDisruptionBudget", RELEASE) in manifests, f"a PodDisruptionBudget ({case})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the rendered manifests")
    args = parser.parse_args()
    print(f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); "
          f"kubernetes-validate schemas {', '.join(KUBE_VERSIONS)}")

    print("== chart: default values (SQLite, one replica) and a tokens Secret")
    values = load_values(overrides=TOKENS)
    lint("default", values)
    manifests = render("default", values, args.out)
    validate("default", manifests)
    common_checks("default", manifests)
    deployment = manifests[("Deployment", RELEASE)]
    check(
        deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate",
        "one replica, strategy Recreate",
    )
    check(("PersistentVolumeClaim", f"{RELEASE}-data") in manifests, "a PersistentVolumeClaim for SQLite")
    config = courier_toml(manifests)
    check(config.get("database_url") == "sqlite:///data/courier.db", "database_url is the SQLite file on the volume")
    check(config.get("metrics_listen") == "0.0.0.0:9464", "metrics_listen 0.0.0.0:9464")
    service_ports = {p["name"]: p["port"] for p in manifests[("Service", RELEASE)]["spec"]["ports"]}
    check(service_ports.get("metrics") == 9464, "the Service exposes metrics 9464")
    check(not any(kind == "ServiceMonitor" for kind, _ in manifests), "no ServiceMonitor by default")
    check(config.get("auth") == {"tokens_file": "/etc/courier/auth/tokens.toml"},
          "auth.tokens_file is the mounted tokens Secret")
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    check(mounts.get("tokens", {}).get("mountPath") == "/etc/courier/auth"
          and volumes.get("tokens", {}).get("secret", {}).get("secretName") == "courier-tokens",
          "the tokens Secret is mounted whole at /etc/courier/auth (updates reach the pod)")
    check("tls" not in config, "no tls without tls.secretName")

    print("== chart: TLS (a kubernetes.io/tls Secret), mutual TLS and tokens")
    values = load_values(overrides={**TOKENS, "tls": {"secretName": "courier-tls", "clientCaSecret": "courier-clients"}})
    lint("tls", values)
    manifests = render("tls", values, args.out)
    validate("tls", manifests)
    common_checks("tls", manifests, tls=True)
    config = courier_toml(manifests)
    check(config.get("tls") == {"cert_file": "/etc/courier/tls/tls.crt", "key_file": "/etc/courier/tls/tls.key",
                                "client_ca_file": "/etc/courier/client-ca/ca.crt"},
          "tls.cert_file, tls.key_file and tls.client_ca_file point at the mounted Secrets")
    volumes = {v["name"]: v for v in manifests[("Deployment", RELEASE)]["spec"]["template"]["spec"]["volumes"]}
    check(volumes.get("tls", {}).get("secret", {}).get("secretName") == "courier-tls"
          and volumes.get("client-ca", {}).get("secret", {}).get("secretName") == "courier-clients",
          "the TLS and client CA Secrets are mounted")

    print("== chart: no authentication, allowed explicitly")
    values = load_values(overrides={"auth": {"allowUnauthenticated": True}})
    lint("open", values)
    manifests = render("open", values, args.out)
    validate("open", manifests)
    common_checks("open", manifests)
    check(courier_toml(manifests).get("auth") == {"allow_unauthenticated": True},
          "auth.allow_unauthenticated = true, and nothing else")

    print("== chart: values-postgres.yaml (PostgreSQL, several replicas)")
    values = load_values("values-postgres.yaml", overrides=TOKENS)
    lint("postgres", values)
    manifests = render("postgres", values, args.out)
    validate("postgres", manifests)
    common_checks("postgres", manifests)
    deployment = manifests[("Deployment", RELEASE)]
    check(
        deployment["spec"]["replicas"] > 1 and deployment["spec"]["strategy"]["type"] == "RollingUpdate",
        f"{deployment['spec']['replicas']} replicas, RollingUpdate",
    )
    env = {e["name"]: e for e in container(manifests)["env"]}
    check(
        env.get("COURIER_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        == {"name": "courier-database", "key": "database-url"},
        "COURIER_DATABASE_URL from the existing Secret's key",
    )
    config = courier_toml(manifests)
    check("database_url" not in config, "no database_url in the ConfigMap")
    check(config.get("postgres", {}).get("max_connections") == 16, "integers stay integers in courier.toml")
    check(not any(kind == "PersistentVolumeClaim" for kind, _ in manifests), "no PersistentVolumeClaim")

    print("== chart: ServiceMonitor enabled")
    values = load_values(overrides={**TOKENS, "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    lint("servicemonitor", values)
    manifests = render("servicemonitor", values, args.out)
    validate("servicemonitor", manifests)
    monitor = manifests.get(("ServiceMonitor", RELEASE))
    check(
        monitor is not None and monitor["spec"]["endpoints"][0]["port"] == "metrics",
        "a ServiceMonitor scraping the Service's metrics port",
    )

    print("== chart: metrics off")
    values = load_values(overrides={**TOKENS, "metrics": {"enabled": False}})
    lint("no-metrics", values)
    manifests = render("no-metrics", values, args.out)
    validate("no-metrics", manifests)
    check("metrics_listen" not in courier_toml(manifests), "no metrics_listen when metrics are off")
    check(
        all(p["name"] != "metrics" for p in manifests[("Service", RELEASE)]["spec"]["ports"]),
        "no metrics port on the Service when metrics are off",
    )

    print("== chart: values that cannot work stop the render")
    for overrides, expected in [
        ({}, "set auth.tokensSecret"),
        ({**TOKENS, "replicaCount": 2}, "exactly one replica"),
        ({**TOKENS, "database": {"type": "postgres"}}, "existingSecret"),
        ({**TOKENS, "config": {"listen": "0.0.0.0:1"}}, "config.listen is set by the chart"),
        ({**TOKENS, "config": {"auth": {"allow_unauthenticated": True}}}, "config.auth is set by the chart"),
        ({"auth": {"jwks": {"secret": "jwks"}}}, "needs auth.jwks.issuer"),
        ({**TOKENS, "tls": {"clientCaSecret": "ca"}}, "needs tls.secretName"),
    ]:
        try:
            with helm.Chart.load(CHART) as chart:
                chart.render(load_values(overrides=overrides), name=RELEASE, namespace=NAMESPACE)
            check(False, f"{overrides} should fail the render")
        except helm.HelmError as error:
            check(expected in str(error), f"{overrides} fails: …{expected}…")

    if failures:
        print(f"chart checks: {len(failures)} failed")
        return 1
    print("chart checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
