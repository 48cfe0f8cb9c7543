#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/images/ (used by the README) from the
# browser tests' own run: a real headless Chromium on a standalone gateway
# (console.png) and on two gateways behind nginx after one was killed
# (console-resumed.png). Needs what ./test.sh installs (chromium, npm, nginx, redis).
set -euo pipefail
cd "$(dirname "$0")/.."
MCPGW_SCREENSHOTS="$PWD/docs/images" cargo test -p e2e-tests --test browser console_ -- --test-threads=1
ls -l docs/images/*.png
