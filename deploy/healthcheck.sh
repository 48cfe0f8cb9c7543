#!/bin/bash
# Container health check without curl: GET /healthz over bash's /dev/tcp, HTTP/1.0 so the
# server closes the connection. Healthy when the gateway port (8000) or the worker's
# metrics port (9100) answers 200; override with MCPGW_HEALTH_PORTS="port ...".
set -u

probe() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  local status=""
  IFS= read -r -t 2 status <&3 || return 1
  case "$status" in
    "HTTP/1."[01]" 200"*) return 0 ;;
    *) return 1 ;;
  esac
}

for port in ${MCPGW_HEALTH_PORTS:-8000 9100}; do
  # A subshell per port: a refused connection must not end the loop.
  if (probe "$port") 2>/dev/null; then
    exit 0
  fi
done
exit 1
