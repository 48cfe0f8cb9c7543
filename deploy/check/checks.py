#!/usr/bin/env python3
"""The Python half of deploy/check.sh: checks that need more than a tool's exit code.

Each subcommand checks one thing, prints what it found and exits non-zero on a failure.

  promql FILE...           every PromQL expression in Grafana dashboards (.json) and rule
                           files (.yml) uses only the metrics and labels of the runtime
                           contract (below), with label values the binaries emit
  dashboard-rules JSON OUT writes the dashboard's expressions as a rule file, so promtool
                           parses each one
  compose CONFIG_JSON RAW  the compose stack's shape: scalable gateways and workers,
                           persistent Redis, the mounted files exist
  grafana CONFIG_JSON      provisioning matches the compose mounts and datasource
  dockerfile FILE          multi-stage, non-root, health check, no build tools at runtime
  helm-lint CHART          helm lint --strict
  helm-render CHART NAME VALUES OUT
                           values valid against values.schema.json, renders, writes each
                           manifest to OUT/k8s (for kubernetes-validate) and the
                           Prometheus Operator objects to OUT/crd after checking them
                           against deploy/schemas; a PrometheusRule's spec must equal
                           deploy/prometheus/alerts.yml (written to OUT/rules.yml for promtool)
  helm-refuses CHART       values that must be refused are refused
  same A B                 two files are identical (chart copies of deploy/ files)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# --- the runtime contract: metric -> (type, labels beyond role/node) ---------------------
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
METRICS: dict[str, tuple[str, set[str]]] = {
    "mcpgw_build_info": (GAUGE, {"version"}),
    "mcpgw_ready": (GAUGE, set()),
    "mcpgw_sessions_open": (GAUGE, set()),
    "mcpgw_sse_streams_open": (GAUGE, {"kind"}),
    "mcpgw_http_requests_total": (COUNTER, {"method", "status"}),
    "mcpgw_jsonrpc_requests_total": (COUNTER, {"method", "outcome"}),
    "mcpgw_notifications_delivered_total": (COUNTER, {"kind"}),
    "mcpgw_delivery_latency_seconds": (HISTOGRAM, set()),
    "mcpgw_events_replayed_total": (COUNTER, set()),
    "mcpgw_slow_client_disconnects_total": (COUNTER, set()),
    "mcpgw_broadcast_fanout": (HISTOGRAM, set()),
    "mcpgw_redis_commands_total": (COUNTER, set()),
    "mcpgw_redis_errors_total": (COUNTER, set()),
    "mcpgw_redis_reconnects_total": (COUNTER, set()),
    "mcpgw_jobs_enqueued_total": (COUNTER, {"tool"}),
    "mcpgw_jobs_running": (GAUGE, set()),
    "mcpgw_jobs_completed_total": (COUNTER, {"tool", "outcome"}),
    "mcpgw_job_duration_seconds": (HISTOGRAM, {"tool"}),
    # The prometheus crate's process collector.
    "process_cpu_seconds_total": (COUNTER, set()),
    "process_resident_memory_bytes": (GAUGE, set()),
    "process_virtual_memory_bytes": (GAUGE, set()),
    "process_open_fds": (GAUGE, set()),
    "process_max_fds": (GAUGE, set()),
    "process_start_time_seconds": (GAUGE, set()),
    "process_threads": (GAUGE, set()),
}
# Labels every series has: the process's own (role, node), Prometheus's (instance, job).
COMMON_LABELS = {"role", "node", "instance", "job"}
# `up` is Prometheus's own series per target.
SYNTHETIC = {"up": {"instance", "job"}}
# Label values the binaries emit, where the contract fixes them.
LABEL_VALUES = {
    "role": {"gateway", "worker"},
    ("mcpgw_sse_streams_open", "kind"): {"post", "get"},
    ("mcpgw_notifications_delivered_total", "kind"): {
        "progress", "message", "request", "response", "other"},
    ("mcpgw_jsonrpc_requests_total", "outcome"): {"ok", "error"},
    ("mcpgw_jobs_completed_total", "outcome"): {
        "ok", "tool_error", "error", "cancelled", "timeout"},
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def fail(msg: str) -> None:
    print(f"  FAIL: {msg}")


def metric_base(name: str) -> tuple[str | None, str]:
    """The contract metric a series name belongs to, and the series suffix."""
    if name in METRICS or name in SYNTHETIC:
        return name, ""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("", set()))[0] == HISTOGRAM:
            return base, suffix
    return None, ""


def labels_of(base: str, suffix: str) -> set[str]:
    if base in SYNTHETIC:
        return SYNTHETIC[base]
    labels = METRICS[base][1] | COMMON_LABELS
    if suffix == "_bucket":
        labels = labels | {"le"}
    return labels


def substitute_grafana(expr: str) -> str:
    """Grafana variables -> PromQL that parses: intervals to 5m, others to `.*`."""
    expr = re.sub(r"\$__(rate_)?interval|\$\{__(rate_)?interval\}|\$__range", "5m", expr)
    return re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*(:[a-z]+)?\}?", ".*", expr)


def check_expr(expr: str, where: str) -> list[str]:
    """Problems of one PromQL expression against the contract."""
    problems = []
    expr = substitute_grafana(expr)
    used: list[tuple[str, str]] = []  # (base, suffix)

    # Selectors: `name{matchers}` or `{matchers}`.
    def selector(m: re.Match) -> str:
        name, body = m.group(1), m.group(2)
        if name and name not in KEYWORDS:
            base, suffix = metric_base(name)
            if base is None:
                problems.append(f"{where}: unknown metric {name!r}")
                return " "
            used.append((base, suffix))
            allowed = labels_of(base, suffix)
            for lm in re.finditer(rf"({IDENT})\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", body):
                label, op, value = lm.groups()
                if label == "__name__":
                    continue
                if label not in allowed:
                    problems.append(f"{where}: {name} has no label {label!r}")
                    continue
                known = LABEL_VALUES.get((base, label)) or LABEL_VALUES.get(label)
                if known and op in ("=", "=~"):
                    values = value.split("|") if op == "=~" else [value]
                    for v in values:
                        if re.fullmatch(r"[a-z_]+", v) and v not in known:
                            problems.append(
                                f"{where}: {name}{{{label}}} is never {v!r} (one of {sorted(known)})")
        return " "

    rest = re.sub(rf"({IDENT})?\s*\{{([^}}]*)\}}", selector, expr)
    rest = re.sub(r"\"[^\"]*\"", " ", rest)  # string arguments (label_replace etc.)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range and subquery durations
    grouping: list[str] = []

    def group(m: re.Match) -> str:
        grouping.extend(re.findall(IDENT, m.group(2)))
        return " "

    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", group, rest)
    rest = re.sub(r"\boffset\s+\d+[smhdwy]", " ", rest)
    for m in re.finditer(rf"(?<![\w.]){IDENT}\b(?!\s*\()", rest):
        name = m.group(0)
        if name in KEYWORDS:
            continue
        base, suffix = metric_base(name)
        if base is None:
            problems.append(f"{where}: unknown metric {name!r}")
        else:
            used.append((base, suffix))
    if not used and not problems:
        problems.append(f"{where}: no metric in {expr!r}")
    # rate() and friends only make sense on counters (and a histogram's parts).
    for m in re.finditer(rf"\b(rate|irate|increase)\(\s*({IDENT})", expr):
        base, suffix = metric_base(m.group(2))
        if base in METRICS and not suffix and METRICS[base][0] != COUNTER:
            problems.append(f"{where}: {m.group(1)}() of the {METRICS[base][0]} {base}")
    available = set().union(*(labels_of(b, s) for b, s in used)) if used else set()
    for label in grouping:
        if label not in available:
            problems.append(f"{where}: groups by {label!r}, which its metrics do not have")
    return problems


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and query variable of a Grafana dashboard."""
    dash = json.loads(path.read_text())
    out = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"{path.name}: panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(rf"label_values\((.*),\s*({IDENT})\)", q.strip())
        if m:
            expr, label = m.groups()
            out.append((f"{path.name}: variable {v['name']}", f"count by ({label}) ({expr})"))
        elif q:
            out.append((f"{path.name}: variable {v['name']}", q))
    return out


def rule_exprs(path: Path) -> list[tuple[str, str]]:
    import yaml

    doc = yaml.safe_load(path.read_text())
    groups = doc.get("groups") or doc.get("spec", {}).get("groups", [])
    return [
        (f"{path.name}: {r.get('alert') or r.get('record')}", r["expr"])
        for g in groups for r in g.get("rules", [])
    ]


def cmd_promql(files: list[str]) -> int:
    problems, count = [], 0
    for f in files:
        path = Path(f)
        exprs = dashboard_exprs(path) if path.suffix == ".json" else rule_exprs(path)
        if not exprs:
            problems.append(f"{path}: no expressions found")
        for where, expr in exprs:
            count += 1
            problems += check_expr(expr, where)
    for p in problems:
        fail(p)
    print(f"  {count} expressions in {len(files)} files checked against the metrics contract")
    return 1 if problems else 0


def cmd_dashboard_rules(dashboard: str, out: str) -> int:
    import yaml

    dash = json.loads(Path(dashboard).read_text())
    if dash.get("uid") != "mcp-notify-gateway" or not dash.get("title"):
        fail("dashboard needs uid mcp-notify-gateway and a title")
        return 1
    ids = []

    def walk(ps):
        for p in ps:
            ids.append(p.get("id"))
            if p.get("type") != "row" and "gridPos" not in p:
                fail(f"panel {p.get('title')!r} has no gridPos")
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)):
        fail("panel ids are not unique")
        return 1
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": substitute_grafana(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs(Path(dashboard)))
    ]
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"  {len(rules)} dashboard expressions written for promtool")
    return 0


# --- compose -------------------------------------------------------------------------------
def cmd_compose(config_json: str, raw: str) -> int:
    import yaml

    problems = []
    raw_doc = yaml.safe_load(Path(raw).read_text())
    if "name" in raw_doc:
        problems.append("top-level `name:` (Debian's docker-compose v1 rejects it)")
    cfg = json.loads(Path(config_json).read_text())
    services = cfg["services"]
    for s in ("redis", "gateway", "worker", "nginx", "prometheus", "grafana"):
        if s not in services:
            problems.append(f"service {s} missing")
    for s in ("gateway", "worker"):
        svc = services.get(s, {})
        if "container_name" in svc:
            problems.append(f"{s}: container_name prevents --scale")
        if svc.get("ports"):
            problems.append(f"{s}: fixed host ports prevent --scale")
        if (svc.get("deploy") or {}).get("replicas", 1) < 2:
            problems.append(f"{s}: at least 2 replicas by default")
        if svc.get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
            problems.append(f"{s}: must wait for a healthy Redis")
        env = svc.get("environment", {})
        if env.get("MCPGW_REDIS_URL") != "redis://redis:6379":
            problems.append(f"{s}: MCPGW_REDIS_URL must be redis://redis:6379")
    if services.get("gateway", {}).get("environment", {}).get("MCPGW_LISTEN") != "0.0.0.0:8000":
        problems.append("gateway: MCPGW_LISTEN must be 0.0.0.0:8000 (nginx and Prometheus use :8000)")
    upstream = services.get("worker", {}).get("environment", {}).get("MCPGW_UPSTREAM", "")
    if upstream != "seed=http://fastmcp:8001/mcp" or "fastmcp" not in services:
        problems.append("worker: MCPGW_UPSTREAM seed=http://fastmcp:8001/mcp, the fastmcp service")
    fastmcp = " ".join(services.get("fastmcp", {}).get("command") or [])
    if "--host 0.0.0.0 --port 8001" not in fastmcp:
        problems.append("fastmcp: must listen on 0.0.0.0:8001 (workers reach it by name)")
    if "--metrics-listen" not in " ".join(services.get("worker", {}).get("command") or []):
        problems.append("worker: --metrics-listen (Prometheus scrapes :9100)")
    redis = services.get("redis", {})
    cmd = " ".join(redis.get("command") or [])
    if "--appendonly yes" not in cmd:
        problems.append("redis: appendonly yes")
    if not any(v.get("type") == "volume" and v.get("target") == "/data" for v in redis.get("volumes", [])):
        problems.append("redis: a named volume on /data")
    if not str(redis.get("image", "")).startswith("redis:7"):
        problems.append("redis: Redis 7")
    for s, svc in services.items():
        for v in svc.get("volumes", []):
            if v.get("type") == "bind" and not Path(v["source"]).exists():
                problems.append(f"{s}: bind mount source {v['source']} does not exist")
    mounts = {v.get("target") for v in services.get("nginx", {}).get("volumes", [])}
    for target in ("/etc/nginx/nginx.conf", "/etc/nginx/mcp.conf"):
        if target not in mounts:
            problems.append(f"nginx: {target} must be mounted from deploy/nginx")
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    if "include /etc/nginx/mcp.conf;" not in conf:
        problems.append("deploy/nginx/nginx.conf must include /etc/nginx/mcp.conf")
    if "server gateway:8000" not in conf:
        problems.append("deploy/nginx/nginx.conf must balance over gateway:8000")
    shared = (ROOT / "deploy/nginx/mcp.conf").read_text()
    for directive in ("proxy_buffering off;", "proxy_cache off;", "proxy_read_timeout 1h;",
                      "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                      "proxy_next_upstream error timeout;"):
        if directive not in shared:
            problems.append(f"deploy/nginx/mcp.conf lacks `{directive}`")
    directives = "\n".join(re.sub(r"#.*", "", t) for t in (shared, conf))
    for sticky in ("ip_hash", "sticky", "hash $"):
        if sticky in directives:
            problems.append(f"nginx config pins sessions ({sticky}): no affinity is needed")
    for p in problems:
        fail(p)
    print(f"  {len(services)} services checked")
    return 1 if problems else 0


# --- Grafana provisioning ------------------------------------------------------------------
def cmd_grafana(config_json: str) -> int:
    import yaml

    problems = []
    prov = ROOT / "deploy/grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"]
    if not any(d.get("uid") == "prometheus" and d.get("url") == "http://prometheus:9090" for d in ds):
        problems.append("datasource uid prometheus at http://prometheus:9090 (the compose service)")
    providers = yaml.safe_load((prov / "dashboards/mcp-notify-gateway.yml").read_text())["providers"]
    paths = {p["options"]["path"] for p in providers}
    services = json.loads(Path(config_json).read_text())["services"]
    mounts = {v.get("target"): v.get("source") for v in services["grafana"].get("volumes", [])}
    for path in paths:
        source = mounts.get(path)
        if not source or not list(Path(source).glob("*.json")):
            problems.append(f"dashboard provider path {path} is not mounted from a folder of dashboards")
    if "/etc/grafana/provisioning" not in mounts:
        problems.append("grafana: provisioning folder not mounted")
    dash = json.loads((ROOT / "deploy/grafana/dashboards/mcp-notify-gateway.json").read_text())
    uses = json.dumps(dash)
    if '"${datasource}"' not in uses or not any(
            v.get("type") == "datasource" for v in dash["templating"]["list"]):
        problems.append("dashboard panels should use the ${datasource} variable")
    for p in problems:
        fail(p)
    print(f"  {len(ds)} datasource, {len(providers)} dashboard provider")
    return 1 if problems else 0


# --- Dockerfile ----------------------------------------------------------------------------
def cmd_dockerfile(path: str) -> int:
    text = Path(path).read_text()
    lines = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    problems = []
    if len(stages) < 2:
        problems.append("multi-stage build expected")
    else:
        if not re.match(r"FROM rust:1-bookworm AS builder", stages[0][0], re.I):
            problems.append("build stage: FROM rust:1-bookworm AS builder")
        if not any("cargo build --release" in l and "-p gateway" in l and "-p worker" in l
                   for l in stages[0]):
            problems.append("build stage: cargo build --release -p gateway -p worker")
        final = stages[-1]
        if not re.match(r"FROM debian:bookworm-slim", final[0], re.I):
            problems.append("runtime stage: FROM debian:bookworm-slim")
        body = "\n".join(final)
        for tool in ("cargo", "rustc", "build-essential", "gcc", "curl", "wget", "pkg-config"):
            if re.search(rf"apt-get install[^\n]*\b{tool}\b", body):
                problems.append(f"runtime stage installs {tool}")
        if "ca-certificates" not in body:
            problems.append("runtime stage: ca-certificates")
        users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problems.append("runtime stage must run as a non-root USER")
        exposed = {p for l in final if l.upper().startswith("EXPOSE ") for p in l.split()[1:]}
        if not {"8000", "9100"} <= exposed:
            problems.append("EXPOSE 8000 9100")
        if not any(l.upper().startswith("HEALTHCHECK ") for l in final):
            problems.append("HEALTHCHECK")
        if not all(b in body for b in ("mcp-gateway", "mcp-worker")):
            problems.append("both binaries in the runtime image")
        for l in final:
            if l.upper().startswith("COPY ") and "--from=" not in l:
                for src in l.split()[1:-1]:
                    if not src.startswith("--") and not (ROOT / src).exists():
                        problems.append(f"COPY source {src} does not exist")
    ignore = (ROOT / ".dockerignore")
    if not ignore.exists() or "target" not in ignore.read_text():
        problems.append(".dockerignore must keep target/ out of the build context")
    for p in problems:
        fail(p)
    print(f"  {len(stages)} stages checked")
    return 1 if problems else 0


# --- Helm ----------------------------------------------------------------------------------
def cmd_helm_lint(chart: str) -> int:
    import helm_python as helm

    report = helm.lint(chart, strict=True)
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    for m in report.get("messages", []):
        print(f"  lint: severity {m.get('severity')} {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []):
        fail(f"lint: {e}")
    print(f"  {report.get('total_charts_linted')} chart linted (strict)")
    return 1 if bad or report.get("errors") else 0


def load_values(path: str) -> dict:
    import yaml

    return (yaml.safe_load(Path(path).read_text()) or {}) if path else {}


def schema_check(chart: str, values: dict) -> list[str]:
    """Both Helm's own schema check and an independent jsonschema one on merged values."""
    import helm_python as helm
    import jsonschema

    c = helm.Chart.load(chart)
    problems = []
    try:
        c.validate_schema(values)
    except Exception as e:  # noqa: BLE001 - any refusal is a finding
        problems.append(f"values.schema.json (helm): {e}")
    schema = json.loads((Path(chart) / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    merged = c.merge_values(values)
    for e in jsonschema.Draft7Validator(schema).iter_errors(merged):
        problems.append(f"values.schema.json: {'/'.join(map(str, e.path))}: {e.message}")
    return problems


def crd_check(doc: dict) -> list[str]:
    import jsonschema

    schema_file = {
        "ServiceMonitor": "servicemonitor.schema.json",
        "PrometheusRule": "prometheusrule.schema.json",
    }.get(doc.get("kind"))
    if not schema_file:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    schema = json.loads((ROOT / "deploy/schemas" / schema_file).read_text())
    return [
        f"{doc['kind']} {doc.get('metadata', {}).get('name')}: {'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]


def cmd_helm_render(chart: str, name: str, values_file: str, out: str) -> int:
    import helm_python as helm
    import yaml

    values = load_values(values_file)
    problems = schema_check(chart, values)
    rendered = helm.Chart.load(chart).render(values, name=name, namespace="mcp", is_install=True)
    k8s, crd = Path(out, "k8s"), Path(out, "crd")
    k8s.mkdir(parents=True, exist_ok=True)
    crd.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            if "/mcp" not in text:
                problems.append("NOTES.txt must say where the MCP endpoint is")
            continue
        for i, doc in enumerate(yaml.safe_load_all(text)):
            if not doc:
                continue
            docs.append(doc)
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
            stem = f"{Path(template).stem}-{i}"
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                problems += crd_check(doc)
                Path(crd, f"{stem}.yaml").write_text(yaml.safe_dump(doc))
                if doc["kind"] == "PrometheusRule":
                    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
                    if doc["spec"] != alerts:
                        problems.append("PrometheusRule spec differs from deploy/prometheus/alerts.yml")
                    Path(out, "rules.yml").write_text(yaml.safe_dump(doc["spec"]))
            else:
                Path(k8s, f"{stem}.yaml").write_text(yaml.safe_dump(doc))
    problems += policy_check(docs, values)
    for p in problems:
        fail(p)
    print(f"  rendered {sum(kinds.values())} objects: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 1 if problems else 0


def policy_check(docs: list[dict], values: dict) -> list[str]:
    """What the chart promises, checked on the rendered objects."""
    problems = []
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments) != ["gateway", "worker"]:
        problems.append("one gateway and one worker Deployment")
    for d in deployments:
        comp = d["metadata"]["labels"]["app.kubernetes.io/component"]
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        probes = {k: c.get(k, {}).get("httpGet", {}).get("path") for k in ("readinessProbe", "livenessProbe")}
        if probes != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
            problems.append(f"{comp}: readiness /readyz and liveness /healthz, got {probes}")
        pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if pre[:1] != ["sleep"]:
            problems.append(f"{comp}: preStop sleep")
        drain = int(values.get(comp, {}).get("drainTimeoutSecs", 10))
        sleep = int(pre[1]) if len(pre) > 1 else 0
        if spec.get("terminationGracePeriodSeconds", 30) <= drain + sleep:
            problems.append(f"{comp}: terminationGracePeriodSeconds must exceed preStop + drain")
        env = {e["name"] for e in c.get("env", [])}
        wants_auth = comp == "gateway" and bool(
            values.get("auth", {}).get("tokens") or values.get("auth", {}).get("existingSecret", {}).get("name"))
        if ("MCPGW_AUTH_TOKENS" in env) != wants_auth:
            problems.append(f"{comp}: MCPGW_AUTH_TOKENS only on gateways, and only when auth is configured")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{comp}: runAsNonRoot")
        hpa = values.get(comp, {}).get("autoscaling", {}).get("enabled", False)
        if hpa and "replicas" in d["spec"]:
            problems.append(f"{comp}: replicas must be left to the HPA")
        if not hpa and d["spec"].get("replicas") != values.get(comp, {}).get("replicas", 2):
            problems.append(f"{comp}: replicas {d['spec'].get('replicas')} != values")
        if hpa and not any(h["kind"] == "HorizontalPodAutoscaler"
                           and h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"] for h in docs):
            problems.append(f"{comp}: HPA missing")
        if not any(p["kind"] == "PodDisruptionBudget"
                   and p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == comp
                   for p in docs):
            problems.append(f"{comp}: PodDisruptionBudget missing")
    services = [d for d in docs if d["kind"] == "Service"
                and d["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]
    if len(services) != 1 or services[0]["spec"].get("sessionAffinity") != "None":
        problems.append("one gateway Service, sessionAffinity None")
    bundled = values.get("redis", {}).get("bundled", {}).get("enabled", True)
    if bundled != any(d["kind"] == "StatefulSet" for d in docs):
        problems.append("the Redis StatefulSet exists exactly when redis.bundled.enabled")
    tokens = values.get("auth", {}).get("tokens")
    if bool(tokens) != any(d["kind"] == "Secret" for d in docs):
        problems.append("the auth Secret exists exactly when auth.tokens is set")
    for d in docs:
        if d["kind"] == "Ingress":
            ann = d["metadata"].get("annotations", {})
            if ann.get("nginx.ingress.kubernetes.io/proxy-buffering") != "off":
                problems.append("Ingress: proxy-buffering off")
            if any("affinity" in k for k in ann):
                problems.append("Ingress: no session affinity")
    return problems


def cmd_helm_refuses(chart: str) -> int:
    import helm_python as helm

    cases = {
        "external and bundled Redis at once": {"redis": {"url": "redis://r:6379"}},
        "no Redis at all": {"redis": {"bundled": {"enabled": False}}},
        "Sentinel mode on the bundled single Redis": {"redis": {"mode": "sentinel"}},
        "Cluster mode on the bundled single Redis": {"redis": {"mode": "cluster"}},
        "an unknown Redis mode (schema)": {"redis": {"mode": "clustered"}},
        "grace period shorter than the drain": {"gateway": {"terminationGracePeriodSeconds": 12}},
        "auth tokens and an existing Secret": {
            "auth": {"tokens": ["0123456789abcdef0"], "existingSecret": {"name": "x"}}},
        "a typo in a key (schema)": {"gateway": {"replica": 3}},
        "a short auth token (schema)": {"auth": {"tokens": ["short"]}},
    }
    problems = []
    c = helm.Chart.load(chart)
    for what, values in cases.items():
        try:
            c.validate_schema(values)
            c.render(values, name="refused", namespace="mcp", is_install=True)
        except Exception as e:  # noqa: BLE001
            print(f"  refused: {what}: {str(e).splitlines()[-1][:120]}")
            continue
        problems.append(f"accepted: {what}")
    for p in problems:
        fail(p)
    return 1 if problems else 0


def cmd_same(a: str, b: str) -> int:
    if Path(a).read_bytes() != Path(b).read_bytes():
        fail(f"{b} differs from {a}: cp {a} {b}")
        return 1
    print(f"  {b} == {a}")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    table = {
        "promql": lambda: cmd_promql(args),
        "dashboard-rules": lambda: cmd_dashboard_rules(*args),
        "compose": lambda: cmd_compose(*args),
        "dockerfile": lambda: cmd_dockerfile(*args),
        "grafana": lambda: cmd_grafana(*args),
        "helm-lint": lambda: cmd_helm_lint(*args),
        "helm-render": lambda: cmd_helm_render(*args),
        "helm-refuses": lambda: cmd_helm_refuses(*args),
        "same": lambda: cmd_same(*args),
    }
    if cmd not in table:
        print(__doc__)
        return 2
    return table[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
