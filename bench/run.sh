#!/usr/bin/env bash
# Runs the benchmark matrix and writes docs/benchmarks.md.
#
#   bench/run.sh                 # default sizes: a few minutes
#   bench/run.sh --full          # longer runs, plus the largest HTTP/1.1 fan-out one process can hold
#   bench/run.sh --skip-build    # reuse the release binaries and the FastMCP venv
#   bench/run.sh --setups "rmcp standalone"   # a subset (fastmcp rmcp standalone redis1 redis2)
#   bench/run.sh --rounds 5      # rounds of `calls` and `sessions` (default 3; the report takes the best)
#
# Set-ups, each started fresh for every workload and stopped after it:
#   fastmcp    the seed's FastMCP server (Python SDK 1.x), bench/peers/fastmcp
#   rmcp       the official Rust SDK's streamable HTTP server (rmcp 3.11), bench/peers/rmcp
#   standalone mcp-gateway alone (in-memory bus, embedded worker)
#   redis1     1 mcp-gateway + 1 mcp-worker + a private redis-server
#   redis2     2 mcp-gateway + 2 mcp-worker + a private redis-server
# The load tool runs on CPU 0, every server process on the other CPUs (taskset).
# Only loopback addresses are used; every run is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FULL=0
BUILD=1
SETUPS="fastmcp rmcp standalone redis1 redis2"
ROUNDS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --full) FULL=1 ;;
    --skip-build) BUILD=0 ;;
    --setups) SETUPS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/target/bench/$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
COMMANDS="$OUT/commands.txt"
: >"$RESULTS"
: >"$COMMANDS"
log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- sizes
if [[ $FULL == 1 ]]; then
  CALLS_SECS=20; SESS_SECS=10; RESUME_SECS=20
  FANOUT_BIG=10000; FANOUT_HUGE=50000
else
  CALLS_SECS=8; SESS_SECS=5; RESUME_SECS=8
  FANOUT_BIG=10000; FANOUT_HUGE=0
fi
# HTTP/2 runs: streams multiplexed over this many connections per gateway, as an HTTP/2
# front proxy sends them: 100 streams on each, below the 200 the gateway allows at once on
# one connection (an open GET holds its slot; requests need room beside them). One socket
# per stream is what caps HTTP/1.1 at RLIMIT_NOFILE; over HTTP/2 50,000 streams fit.
H2_CONNS=100
H2_HUGE=50000; H2_HUGE_CONNS=500

# ---------------------------------------------------------------- build
BENCH="$ROOT/target/release/mcp-bench"
GATEWAY="$ROOT/target/release/mcp-gateway"
WORKER="$ROOT/target/release/mcp-worker"
RMCP_TARGET="$ROOT/target/peers/rmcp"
RMCP_PEER="$RMCP_TARGET/release/rmcp-peer"
VENV="$ROOT/target/peers/fastmcp-venv"
if [[ $BUILD == 1 ]]; then
  log "building release binaries (gateway, worker, mcp-bench)"
  cargo build --release -p gateway -p worker -p mcp-bench
  log "building the rmcp peer (its own target dir: $RMCP_TARGET)"
  (cd bench/peers/rmcp && CARGO_TARGET_DIR="$RMCP_TARGET" cargo build --release)
  log "installing the FastMCP peer's venv ($VENV)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/peers/fastmcp/requirements.txt
fi
for f in "$BENCH" "$GATEWAY" "$WORKER" "$RMCP_PEER" "$VENV/bin/python"; do
  [[ -x "$f" ]] || { echo "missing $f (run without --skip-build)" >&2; exit 1; }
done
# Run private copies: a concurrent `cargo build` must not swap a binary mid-run.
mkdir -p "$OUT/bin"
cp -p "$BENCH" "$GATEWAY" "$WORKER" "$RMCP_PEER" "$OUT/bin/"
BENCH="$OUT/bin/mcp-bench"; GATEWAY="$OUT/bin/mcp-gateway"; WORKER="$OUT/bin/mcp-worker"; RMCP_PEER="$OUT/bin/rmcp-peer"
{
  echo "mcp-gateway and mcp-worker built $(date -u -r "$GATEWAY" +%Y-%m-%dT%H:%MZ) from the working tree; at run time HEAD was $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- gateway worker bus protocol telemetry 2>/dev/null || echo ' with uncommitted changes in gateway/worker/bus/protocol/telemetry')"
} >"$OUT/env.txt"
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }

# ---------------------------------------------------------------- limits, pinning
# Servers and the load tool hold up to ~2 sockets per stream each.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
NCPU="$(nproc)"
if [[ $NCPU -ge 2 ]] && command -v taskset >/dev/null; then
  SERVER_CPUS="1-$((NCPU - 1))"; [[ $NCPU == 2 ]] && SERVER_CPUS=1
  BENCH_PIN=(taskset -c 0)
  SERVER_PIN=(taskset -c "$SERVER_CPUS")
  PINNING="load tool on CPU 0; every server process (gateways, workers, Redis, peers) on CPU(s) $SERVER_CPUS"
else
  BENCH_PIN=(); SERVER_PIN=()
  PINNING="not pinned (fewer than 2 CPUs or no taskset)"
fi
NOFILE="$(ulimit -n)"
log "nofile $NOFILE; $PINNING"
# One stream = one socket in the gateway and one in the load tool: the fd limit caps the
# streams one process can hold.
if [[ $FANOUT_HUGE -gt 0 && $FANOUT_HUGE -gt $((NOFILE - 1000)) ]]; then
  echo "50,000-stream run capped at $((NOFILE - 1000)) streams: RLIMIT_NOFILE is $NOFILE here and cannot be raised (no CAP_SYS_RESOURCE); one stream needs one descriptor in the gateway" >>"$OUT/env.txt"
  FANOUT_HUGE=$((NOFILE - 1000))
fi
if [[ $FANOUT_BIG -gt $((NOFILE - 1000)) ]]; then
  echo "10,000-stream runs capped at $((NOFILE - 1000)) streams (RLIMIT_NOFILE $NOFILE)" >>"$OUT/env.txt"
  FANOUT_BIG=$((NOFILE - 1000))
fi

# ---------------------------------------------------------------- processes
PIDS=()          # every process this script started (stopped by id)
PID_ARGS=()      # --pid KIND=PID for the load tool
URL_ARGS=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() { # KIND LOGNAME CMD...
  local kind="$1" name="$2"; shift 2
  echo "${SERVER_PIN[*]} $*" >>"$COMMANDS"
  "${SERVER_PIN[@]}" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  PID_ARGS+=(--pid "$kind=$pid")
}

wait_tcp() { # PORT
  local i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

wait_http() { # URL (a gateway's /readyz)
  local i
  for i in $(seq 1 200); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$1 never became ready" >&2
  return 1
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=(); PID_ARGS=(); URL_ARGS=()
}
trap 'stop_all' EXIT

GW_FLAGS=(--drain-timeout-secs 1 --log-format text)

setup() { # NAME: starts it, fills URL_ARGS and PID_ARGS
  local port p2 rport
  case "$1" in
    fastmcp)
      port=$(free_port)
      start server fastmcp "$VENV/bin/python" bench/peers/fastmcp/server.py --port "$port"
      wait_tcp "$port"; URL_ARGS=(--url "http://127.0.0.1:$port/mcp") ;;
    rmcp)
      port=$(free_port)
      start server rmcp "$RMCP_PEER" --port "$port"
      wait_tcp "$port"; URL_ARGS=(--url "http://127.0.0.1:$port/mcp") ;;
    standalone)
      port=$(free_port)
      start gateway gateway "$GATEWAY" --listen "127.0.0.1:$port" "${GW_FLAGS[@]}"
      wait_http "http://127.0.0.1:$port/readyz"; URL_ARGS=(--url "http://127.0.0.1:$port/mcp") ;;
    redis1|redis2)
      local n=1; [[ $1 == redis2 ]] && n=2
      rport=$(free_port)
      start redis redis redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --maxclients 10000
      wait_tcp "$rport"
      local i
      for i in $(seq 1 "$n"); do
        start worker "worker$i" "$WORKER" --redis-url "redis://127.0.0.1:$rport" --log-format text
      done
      for i in $(seq 1 "$n"); do
        port=$(free_port)
        start gateway "gateway$i" "$GATEWAY" --redis-url "redis://127.0.0.1:$rport" --listen "127.0.0.1:$port" "${GW_FLAGS[@]}"
        wait_http "http://127.0.0.1:$port/readyz"
        URL_ARGS+=(--url "http://127.0.0.1:$port/mcp")
      done
      # Workers announce their tools; wait until tools/list would see them.
      sleep 1 ;;
    *) echo "unknown set-up $1" >&2; exit 2 ;;
  esac
}

bench() { # SETUP WORKLOAD ARGS...
  local name="$1"; shift
  setup "$name"
  local cmd=("$BENCH" --label "$name" "${URL_ARGS[@]}" "${PID_ARGS[@]}" "$@")
  echo "${BENCH_PIN[*]} ${cmd[*]}" >>"$COMMANDS"
  log "$name: $*"
  local line
  if "${BENCH_PIN[@]}" timeout 900 "${cmd[@]}" >"$OUT/last.out" 2>"$OUT/last.err"; then
    cat "$OUT/last.out" >&2
    grep '^{' "$OUT/last.out" >>"$RESULTS" || true
  else
    log "$name $1 FAILED: $(tail -3 "$OUT/last.err")"
    printf '{"workload":"%s","label":"%s","failed":true,"error":%s}\n' "$1" "$name" \
      "$(tail -3 "$OUT/last.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >>"$RESULTS"
  fi
  stop_all
  sleep 0.5
}

# ---------------------------------------------------------------- the platform floor
# What one loopback write costs here bounds any fan-out: one delivery = one write.
if command -v cc >/dev/null && cc -O2 -o "$OUT/bin/loopback_write" bench/floor/loopback_write.c; then
  for _ in 1 2 3; do
    echo "${SERVER_PIN[*]} bench/floor/loopback_write 5000 20" >>"$COMMANDS"
    "${SERVER_PIN[@]}" "$OUT/bin/loopback_write" 5000 20 >>"$RESULTS" || true
  done
  log "loopback write floor: $(grep '"floor"' "$RESULTS" | tail -3 | python3 -c 'import json,sys; print(min(json.loads(l)["us_per_write"] for l in sys.stdin), "us per write")')"
fi

# ---------------------------------------------------------------- the matrix
# The short, CPU-bound workloads run in rounds over all set-ups (A B C, A B C, ...), so a
# neighbour's burst of load does not decide a ratio; the report takes each set-up's best round.
for round in $(seq 1 "$ROUNDS"); do
  for s in $SETUPS; do
    log "round $round/$ROUNDS"
    bench "$s" calls -c 50 -s 10 --step-ms 0 --duration-secs "$CALLS_SECS" --warmup-secs 2
    case "$s" in
      # The same calls over the stateless revision; the peers do not speak it.
      standalone|redis1|redis2)
        bench "$s" calls -c 50 -s 10 --step-ms 0 --duration-secs "$CALLS_SECS" --warmup-secs 2 --protocol-version 2026-07-28 ;;
    esac
    bench "$s" sessions -c 50 --duration-secs "$SESS_SECS"
  done
done
for s in $SETUPS; do
  bench "$s" fanout -n 1000 -k 10
  case "$s" in
    fastmcp) ;;  # 10k streams: FastMCP caps sessions at 10,000 and needs minutes to set them up
    *) bench "$s" fanout -n "$FANOUT_BIG" -k 10 ;;
  esac
  case "$s" in
    # The peers are built without HTTP/2 (rmcp's axum has no http2 feature; uvicorn has none).
    standalone|redis1|redis2) bench "$s" fanout -n 10000 -k 10 --http2-connections "$H2_CONNS" ;;
  esac
  if [[ $s == standalone ]]; then
    bench "$s" fanout -n "$H2_HUGE" -k 10 --settle-secs 30 --http2-connections "$H2_HUGE_CONNS"
  fi
  if [[ $s == standalone && $FANOUT_HUGE -gt 0 ]]; then
    bench "$s" fanout -n "$FANOUT_HUGE" -k 10 --settle-secs 30
  fi
  bench "$s" resume -c 20 -s 20 --step-ms 5 --duration-secs "$RESUME_SECS"
done

# ---------------------------------------------------------------- report
{
  echo "pinning: $PINNING"
  echo "RLIMIT_NOFILE (soft/hard): $(ulimit -Sn)/$(ulimit -Hn)"
  echo "load average when the report was written: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs on the machine skew absolute figures; each row's load is in the raw JSON)"
} >>"$OUT/env.txt"
python3 bench/report.py --results "$RESULTS" --commands "$COMMANDS" --env "$OUT/env.txt" \
  --full "$FULL" --rounds "$ROUNDS" --out docs/benchmarks.md
log "wrote docs/benchmarks.md (raw results: ${RESULTS#"$ROOT"/})"
