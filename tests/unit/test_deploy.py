"""deploy/ is checked, not run: promtool on the Prometheus files, and cross-checks of the
dashboard, the rules, compose, Kubernetes and the Dockerfile against the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from streams import metrics
from streams.api.web import ROUTES, SERVING_ROUTES
from streams.settings import Settings
from streams.worker import experiment_metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
SETTINGS_ENV = {f"REELSTREAM_{f.name.upper()}" for f in fields(Settings)}
METRIC_RE = re.compile(r"\b(reelstream_[a-z0-9_]+)")
RECORDED_RE = re.compile(r"\b(reelstream:[a-z0-9_:]+)")


def families() -> list[tuple[str, str]]:
    """(name, type) of every family the worker can export: its registry, plus the
    artwork/experiment collector it registers when a hook is on."""
    out = [(f.name, f.type) for f in metrics.REGISTRY.collect()]
    return out + sorted(experiment_metrics.family_names().items())


def exported_names(fams: list[tuple[str, str]] | None = None) -> set[str]:
    """Every series name of ``fams`` (default: all the worker's registry can export),
    suffixes included."""
    names = set()
    for name, kind in families() if fams is None else fams:
        if kind == "counter":
            names |= {name + "_total", name + "_created"}
        elif kind == "histogram":
            names |= {name + s for s in ("_bucket", "_count", "_sum", "_created")}
        else:
            names.add(name)
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not installed: run deploy/install-test-tools.sh (as root) or install "
            "Debian's 'prometheus' package; `make test` does this for you"
        )
    return subprocess.run([exe, *args], cwd=PROM, capture_output=True, text=True, timeout=60)


def rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "reelstream.json").read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def row_panels(dash: dict, title_part: str) -> list[dict]:
    """The panels of the (expanded) row whose title has ``title_part``: those after it in
    the list, up to the next row."""
    panels = dash["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and title_part in p["title"])
    out = []
    for p in panels[start + 1 :]:
        if p["type"] == "row":
            break
        out.append(p)
    return out


def test_promtool_accepts_the_scrape_config():
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_required_alerts_exist():
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert {
        "ReelstreamWorkerDown",
        "ReelstreamWorkerNotReady",
        "ReelstreamApiDown",
        "ReelstreamApiNotReady",
        "ReelstreamConsumerLagGrowing",
        "ReelstreamFreshnessP99AboveObjective",
        "ReelstreamDeadLetterRateHigh",
        "ReelstreamRedisErrors",
        "ReelstreamRankerAucDropping",
    } <= alerts


def test_alerts_on_families_both_processes_export_name_the_job():
    """reelstream_ready and the HTTP histogram come from workers and api processes alike:
    an alert on them without a job would page about one as the other. Compose and the
    Prometheus Operator give the targets the same job names."""
    scrape_jobs = {
        j["job_name"]
        for j in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]
    }
    pod_monitor_jobs = {
        r["replacement"]
        for name, doc in k8s_docs().items()
        if name.startswith("PodMonitor/")
        for e in doc["spec"]["podMetricsEndpoints"]
        for r in e["relabelings"]
        if r["targetLabel"] == "job"
    }
    assert pod_monitor_jobs == scrape_jobs == {"reelstream-workers", "reelstream-api"}
    for rule in rules():
        if "alert" not in rule:
            continue
        if "reelstream_ready" in rule["expr"]:
            (job,) = re.findall(r'reelstream_ready\{job="([^"]+)"\}', rule["expr"])
            assert job in scrape_jobs, rule["alert"]
        if "reelstream_http_request_duration_seconds" in rule["expr"]:
            assert "by (job)" in rule["expr"], rule["alert"]


def test_rules_and_dashboard_query_only_metrics_the_worker_exports():
    exported = exported_names()
    recorded = {r["record"] for r in rules() if "record" in r}
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    used = {name for e in exprs for name in METRIC_RE.findall(e)}
    assert used, "no reelstream metric found in the queries"
    assert used - exported == set()
    used_recorded = {name for e in exprs for name in RECORDED_RE.findall(e)}
    assert used_recorded <= recorded


def test_metric_names_have_the_prefix_and_docs_list_every_one():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name, kind in families():
        assert name.startswith("reelstream_")
        shown = name + ("_total" if kind == "counter" else "")
        assert f"`{shown}`" in doc, f"docs/metrics.md does not list {shown}"


def test_dashboard_covers_what_operators_watch_and_uses_the_provisioned_datasource():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(dashboard_exprs())
    for needle in (
        "reelstream_events_consumed_total",
        "reelstream_consumer_lag_records",
        "reelstream_score_freshness_seconds_bucket",
        "reelstream_events_rejected_total",
        "reelstream_redis_errors_total",
        "reelstream_score_refreshes_total",
        "reelstream_refreshes_debounced_total",
        "reelstream_model_ranker_auc_ratio",
        "reelstream_experiment_plays",
        "reelstream_experiment_watch_seconds",
        "reelstream_experiment_completes",
        "reelstream_artwork_outcomes_total",
    ):
        assert needle in exprs
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert any("Experiments" in r["title"] for r in rows)
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])} == {uid}
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/reelstream.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_read_api_row_queries_what_the_api_process_exports():
    """The api process exports a few families (serving.METRIC_FAMILIES), some also exported by
    workers: each selector names its job, and the api's only what the api process has."""
    from streams.api.serving import METRIC_FAMILIES

    api_series = exported_names([f for f in families() if f[0] in METRIC_FAMILIES]) | {"up"}
    by_job = {"reelstream-api": api_series, "reelstream-workers": exported_names() | {"up"}}
    panels = row_panels(dashboard(), "reelstream api")
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    selectors = re.findall(r"\b(reelstream_[a-z0-9_]+|up)\b(\{[^}]*\})?", " ".join(exprs))
    assert selectors
    for name, labels in selectors:
        (job,) = re.findall(r'job="([^"]+)"', labels) or [None]
        assert job in by_job, f"{name}{labels}: no job"
        assert name in by_job[job], f"{name} is not exported by job {job}"
    joined = " ".join(exprs)
    for needle in (  # request rate and p99 by route, errors, readiness, followers
        "sum by (route) (rate(reelstream_http_request_duration_seconds_count",
        "histogram_quantile(0.99, sum by (le, route)",
        'status=~"5.."',
        'reelstream_ready{job="reelstream-api"}',
        'up{job="reelstream-api"}',
        'reelstream_catalog_titles{job="reelstream-api"}',
        'reelstream_title_view_titles{job="reelstream-api"}',
    ):
        assert needle in joined, needle
    worker_http = [
        e for e in dashboard_exprs() if "reelstream_http_request" in e and e not in exprs
    ]
    assert worker_http and all('job="reelstream-workers"' in e for e in worker_http)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_runs_the_whole_system_with_consistent_names_and_ports():
    doc = compose()
    services = doc["services"]
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    env = services["worker"]["environment"]
    assert set(env) <= SETTINGS_ENV, set(env) - SETTINGS_ENV
    assert env["REELSTREAM_BROKER"].split(":")[0] == "kafka"
    assert (
        env["REELSTREAM_BROKER"].split(":")[1]
        in services["kafka"]["environment"]["KAFKA_LISTENERS"]
    )
    assert "redis:6379" in env["REELSTREAM_REDIS_URL"]
    assert env["REELSTREAM_WEB_HOST"] == "0.0.0.0"
    assert services["worker"]["deploy"]["replicas"] >= 2
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    sd = prom["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and str(sd["port"]) == env["REELSTREAM_WEB_PORT"]
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts missing {src}"
    for probe in (services["worker"]["healthcheck"]["test"][-1],):
        assert any(path in probe for path in ("/readyz", "/healthz"))


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc.get('metadata', {}).get('name', path.stem)}"] = doc
    return docs


def test_kubernetes_workers_have_probes_on_real_routes_resources_and_scrape_annotations():
    docs = k8s_docs()
    sts = docs["StatefulSet/reelstream-worker"]
    pod = sts["spec"]["template"]
    container = pod["spec"]["containers"][0]
    paths = {path for path, _, _ in ROUTES}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    ann = pod["metadata"]["annotations"]
    config = docs["ConfigMap/reelstream-config"]["data"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    web_port = int(config["REELSTREAM_WEB_PORT"])
    assert int(ann["prometheus.io/port"]) == port_names["http"] == web_port
    assert set(config) <= SETTINGS_ENV, set(config) - SETTINGS_ENV
    env_names = {e["name"] for e in container["env"]}
    assert env_names <= SETTINGS_ENV
    secret = docs["Secret/reelstream-secrets"]["stringData"]
    for e in container["env"]:
        ref = e["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "reelstream-secrets" and ref["key"] in secret
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mount["data"] == config["REELSTREAM_DATA_DIR"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    selector = sts["spec"]["selector"]["matchLabels"]
    for name in ("Service/reelstream-worker", "Service/reelstream-worker-api"):
        assert docs[name]["spec"]["selector"] == selector
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (DEPLOY / "k8s" / res).exists()


def test_kubernetes_read_api_is_a_stateless_deployment_behind_the_api_service():
    docs = k8s_docs()
    dep = docs["Deployment/reelstream-api"]
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["api"]
    config = docs["ConfigMap/reelstream-config"]["data"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    api_port = int(config["REELSTREAM_API_PORT"])
    assert (
        port_names["http"] == api_port == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    )
    assert config["REELSTREAM_API_HOST"] == "0.0.0.0"
    served = {path for path, _, _ in SERVING_ROUTES}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in served
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in served
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert "volumeMounts" not in container and "volumeClaimTemplates" not in dep["spec"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    secret = docs["Secret/reelstream-secrets"]["stringData"]
    for e in container["env"]:
        assert e["name"] in SETTINGS_ENV and e["valueFrom"]["secretKeyRef"]["key"] in secret
    labels = dep["spec"]["selector"]["matchLabels"]
    assert pod["metadata"]["labels"] == labels
    assert docs["Service/reelstream-api"]["spec"]["selector"] == labels
    assert docs["PodDisruptionBudget/reelstream-api"]["spec"]["selector"]["matchLabels"] == labels
    assert docs["PodMonitor/reelstream-api"]["spec"]["selector"]["matchLabels"] == labels
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "api-deployment.yaml" in kust["resources"]


def test_compose_and_prometheus_run_and_scrape_the_read_api():
    services = compose()["services"]
    api = services["api"]
    env = api["environment"]
    assert api["command"] == ["api"] and api["image"] == services["worker"]["image"]
    assert env["REELSTREAM_API_HOST"] == "0.0.0.0"
    port = env["REELSTREAM_API_PORT"]
    assert api["expose"] == [port] and api["ports"] == [f"127.0.0.1::{port}"]
    assert f"127.0.0.1:{port}/readyz" in api["healthcheck"]["test"][-1]
    assert "volumes" not in api
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "reelstream-api"]
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["api"] and str(sd["port"]) == port


def test_dockerfile_exposes_the_web_port_and_sets_only_known_settings():
    text = (ROOT / "Dockerfile").read_text()
    env_names = set(re.findall(r"\b(REELSTREAM_[A-Z_]+)=", text))
    assert env_names and env_names <= SETTINGS_ENV
    assert re.search(r"^EXPOSE 6066$", text, re.M)
    assert "REELSTREAM_WEB_HOST=0.0.0.0" in text
    assert re.search(r"^EXPOSE 6067$", text, re.M)  # `reelstream api`
    assert "REELSTREAM_API_HOST=0.0.0.0" in text and "REELSTREAM_API_PORT=6067" in text


def test_openapi_documents_exactly_the_served_routes():
    from tests.openapi_check import spec

    doc = spec()
    assert doc["openapi"].startswith("3.")
    from streams.api.forecast_web import PATH as FORECAST_PATH
    from streams.api.query_web import PATH as QUERY_PATH  # the POST routes

    assert set(doc["paths"]) == {path for path, _, _ in ROUTES} | {QUERY_PATH, FORECAST_PATH}
    for path, _, allowed in ROUTES:
        params = doc["paths"][path]["get"].get("parameters", [])
        names = {p["name"] for p in params if "name" in p and p.get("in") == "query"}
        assert names == set(allowed), path


def test_kubernetes_lets_only_api_clients_and_prometheus_reach_the_workers():
    docs = k8s_docs()
    deny = docs["NetworkPolicy/default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    allow = docs["NetworkPolicy/reelstream-worker-http"]
    sts = docs["StatefulSet/reelstream-worker"]
    assert allow["metadata"]["namespace"] == sts["metadata"]["namespace"]
    assert allow["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    (rule,) = allow["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert {"reelstream.io/api-client": "true"} in [
        p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p
    ]
    assert all("ipBlock" not in p for p in rule["from"])
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kust["resources"]
    api = docs["NetworkPolicy/reelstream-api-http"]
    dep = docs["Deployment/reelstream-api"]
    assert api["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert api["spec"]["ingress"] == allow["spec"]["ingress"]  # the same callers, the same port


def test_deploy_files_set_the_bind_and_the_topic_replication_explicitly():
    config = k8s_docs()["ConfigMap/reelstream-config"]["data"]
    env = compose()["services"]["worker"]["environment"]
    for values in (config, env):
        assert "REELSTREAM_WEB_HOST" in values and "REELSTREAM_API_HOST" in values
        assert (
            "REELSTREAM_REPLICATION_FACTOR" in values and "REELSTREAM_MIN_INSYNC_REPLICAS" in values
        )
    prod = Settings(
        replication_factor=int(config["REELSTREAM_REPLICATION_FACTOR"]),
        min_insync_replicas=int(config["REELSTREAM_MIN_INSYNC_REPLICAS"]),
    )
    assert (prod.replication_factor, prod.topic_configs()) == (3, {"min.insync.replicas": "2"})
    assert "REELSTREAM_DEBUG_TOKEN" not in config and "REELSTREAM_DEBUG_TOKEN" not in env
