#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every target in fuzz/fuzz_targets (cargo-fuzz,
# libFuzzer): build once, run each target for SECONDS (default 45), fail on any crash.
# `.ci/run` runs it with 30 s per target.
#
#   fuzz/run.sh [SECONDS]
#
# Works on the stable toolchain: cargo-fuzz needs a few unstable rustc flags, which
# RUSTC_BOOTSTRAP=1 unlocks for this build only (the workspace build is untouched: the
# fuzz package has its own lock file and profile, see fuzz/Cargo.toml). Installs
# cargo-fuzz (`cargo install cargo-fuzz --locked`, ~2 min) when it is missing.
#
# The instrumented build and the grown corpus live in a cache directory outside the
# clone, so a fresh clone (as CI makes) reuses them: the instrumented dependency tree
# builds once per machine (~15 min on 2 busy cores), later runs rebuild only this
# repository's crates (~1 min). Default: ${XDG_CACHE_HOME:-$HOME/.cache}/mcp-notify-gateway/.
#
# Inputs: the checked-in seeds (fuzz/seeds/<target>) plus the corpus grown by earlier
# runs (<cache>/fuzz-corpus/<target>). A crash leaves its input under
# fuzz/artifacts/<target>/ in the clone (the path is printed); reproduce it with
#   <cache>/fuzz-target/x86_64-unknown-linux-gnu/release/<target> <artifact>
# (or: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -O -a -s none <target> <artifact>)
# and turn it into a regression test.
#
# The grown corpus is kept small: once a target's holds more than FUZZ_CORPUS_MAX inputs
# (default 5000), libFuzzer's `-merge=1` rewrites it as the smallest set with the same
# coverage, so runs do not slow down as it grows.
#
# Environment: FUZZ_SANITIZER (default none: the code under test is safe Rust, where a
# bug is a panic or an overflow, both caught without a sanitizer at twice the speed; set
# `address` for ASan), FUZZ_TARGETS (a space-separated subset), FUZZ_CACHE_DIR (instead
# of the cache directory above).
set -uo pipefail

SECONDS_PER_TARGET="${1:-45}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS per target, default 45]" >&2
  exit 2
fi
FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
SANITIZER="${FUZZ_SANITIZER:-none}"
CACHE_DIR="${FUZZ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-notify-gateway}"
CORPUS_DIR="$CACHE_DIR/fuzz-corpus"
CORPUS_MAX="${FUZZ_CORPUS_MAX:-5000}"
mkdir -p "$CACHE_DIR" "$CORPUS_DIR"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$CACHE_DIR/fuzz-target"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "could not install cargo-fuzz" >&2; exit 1; }
fi

# cargo-fuzz passes -Ccodegen-units=1 unless told otherwise; 16 lets the big crates
# compile in parallel (the profile in fuzz/Cargo.toml says why the build is made cheap).
FLAGS=(--fuzz-dir "$FUZZ_DIR" -O -a -s "$SANITIZER" --codegen-units 16)
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi

echo "== building ${#TARGETS[@]} fuzz targets (release, debug assertions, sanitizer: $SANITIZER) in $CARGO_TARGET_DIR"
start=$(date +%s)
if ! cargo fuzz build "${FLAGS[@]}"; then
  echo "the fuzz targets do not build"
  echo "0 passed, ${#TARGETS[@]} failed"
  exit 1
fi
echo "== built in $(($(date +%s) - start)) s"
BIN_DIR="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

passed=0
failed=0
failures=()
for target in "${TARGETS[@]}"; do
  corpus="$CORPUS_DIR/$target"
  seeds="$FUZZ_DIR/seeds/$target"
  mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target"
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [[ -f "$FUZZ_DIR/dicts/$target.dict" ]] && args+=(-dict="$FUZZ_DIR/dicts/$target.dict")
  inputs=("$corpus")
  [[ -d "$seeds" ]] && inputs+=("$seeds")
  log="$FUZZ_DIR/artifacts/$target/last-run.log"
  echo "== $target: ${SECONDS_PER_TARGET} s"
  # The binary itself, not `cargo fuzz run`, which would relink it for each target.
  "$BIN_DIR/$target" -artifact_prefix="$FUZZ_DIR/artifacts/$target/" "${args[@]}" "${inputs[@]}" >"$log" 2>&1
  status=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
  if [[ $status -eq 0 ]]; then
    passed=$((passed + 1))
    size=$(find "$corpus" -type f | wc -l)
    echo "   ok: ${runs:-?} executions, ${cov:-cov: ?}, corpus $size inputs"
    if ((size > CORPUS_MAX)); then
      merged="$corpus.merging"
      rm -rf "$merged" && mkdir -p "$merged"
      if "$BIN_DIR/$target" -merge=1 -timeout=10 -rss_limit_mb=2048 "$merged" "$corpus" >"$log.merge" 2>&1; then
        rm -rf "$corpus" && mv "$merged" "$corpus"
        echo "   corpus merged: $size -> $(find "$corpus" -type f | wc -l) inputs with the same coverage"
      else
        rm -rf "$merged"
        echo "   corpus merge failed (kept as it was); the log is $log.merge"
      fi
    fi
  else
    failed=$((failed + 1))
    failures+=("$target")
    echo "   FAILED (exit $status); the log is $log"
    # The panic message, and where libFuzzer wrote the crashing input.
    grep -A2 "panicked at" "$log" | head -6 | sed 's/^/   | /'
    grep -E "ERROR: libFuzzer|Test unit written to" "$log" | head -4 | sed 's/^/   /'
  fi
done

if ((failed)); then
  echo "failed targets: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
