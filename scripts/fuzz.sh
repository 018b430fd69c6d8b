#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with cargo-fuzz and runs each one for a bounded time,
# starting from its seed corpus in fuzz/corpus/TARGET. Fails when a target crashes (a
# panic, a failed check, a timeout or running out of memory) and says how to reproduce it.
#
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (libFuzzer -max_total_time); default 20
#   TARGET   which targets; default all of them (see fuzz/Cargo.toml)
#
# Environment:
#   FUZZ_SANITIZER   cargo fuzz --sanitizer: none (default) or address. The relay is safe
#                    Rust; address finds memory errors in unsafe dependency code, at about
#                    half the speed and a longer build.
#   FUZZ_JOBS        parallel fuzzing processes per target (libFuzzer -fork); default 1
#
# What a run finds beyond the seeds stays in a temporary folder: the corpus in the repo
# stays small. A crash is written to fuzz/artifacts/TARGET/ (not in git).
#
# cargo-fuzz needs nightly compiler flags (-Z, sanitizer coverage). On a stable toolchain
# the script sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. It installs
# cargo-fuzz with `cargo install cargo-fuzz --locked` when it is missing.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

ALL_TARGETS=(webhook_payload render_hostile_labels link_token)
SECONDS_PER_TARGET="${1:-20}"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || {
    echo "fuzz: SECONDS must be a positive whole number, got '$SECONDS_PER_TARGET'" >&2
    exit 2
}
shift || true
if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"
# The hard limit per target on top of SECONDS: startup, reading the corpus, and the
# last input. libFuzzer stops itself at SECONDS; this only catches a hang of the whole run.
HARD_TIMEOUT_MARGIN=120

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

if ! rustc --version | grep -q nightly; then
    # Stable rustc with the nightly flags cargo-fuzz passes.
    export RUSTC_BOOTSTRAP=1
fi

# -O: optimised, as fuzzing needs; -a: with debug assertions and overflow checks, so an
# overflow is a crash. 16 codegen units build much faster and run a little slower.
BUILD_FLAGS=(--fuzz-dir fuzz -O -a --sanitizer "$SANITIZER" --codegen-units 16)

echo "fuzz: building ${TARGETS[*]} (sanitizer: $SANITIZER)"
build_started=$SECONDS
if [[ $# -eq 0 ]]; then
    cargo fuzz build "${BUILD_FLAGS[@]}"
else
    for target in "${TARGETS[@]}"; do
        cargo fuzz build "${BUILD_FLAGS[@]}" "$target"
    done
fi
echo "fuzz: built in $((SECONDS - build_started)) s"
# The targets run straight from here, not through `cargo fuzz run`: nothing is rebuilt
# inside the time limit.
BINARIES="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/samsa-relay-fuzz.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

failed=()
for target in "${TARGETS[@]}"; do
    seeds="fuzz/corpus/$target"
    [[ -d "$seeds" ]] || { echo "fuzz: no seed corpus $seeds" >&2; exit 2; }
    corpus="$WORK/corpus-$target"
    log="$WORK/$target.log"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    fuzzer_flags=(
        -max_total_time="$SECONDS_PER_TARGET"
        # One input taking over 10 s, or over 2 GB, is a crash too.
        -timeout=10
        -rss_limit_mb=2048
        -max_len=65536
        -print_final_stats=1
    )
    if [[ "$JOBS" -gt 1 ]]; then
        fuzzer_flags+=(-fork="$JOBS" -ignore_crashes=0)
    fi
    printf 'fuzz: %s for %s s ... ' "$target" "$SECONDS_PER_TARGET"
    started="$WORK/$target.started"
    touch "$started"
    status=0
    # The new corpus folder comes first: libFuzzer adds what it finds there, and only
    # reads the seeds.
    timeout --kill-after=10 "$((SECONDS_PER_TARGET + HARD_TIMEOUT_MARGIN))" \
        "$BINARIES/$target" "${fuzzer_flags[@]}" -artifact_prefix="fuzz/artifacts/$target/" \
        "$corpus" "$seeds" >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    found="$(find "$corpus" -type f | wc -l)"
    if [[ "$status" -eq 0 ]]; then
        echo "ok: ${runs:-?} executions, $found new corpus inputs"
        continue
    fi
    failed+=("$target")
    if [[ "$status" -eq 124 || "$status" -eq 137 ]]; then
        echo "FAILED: still running after $((SECONDS_PER_TARGET + HARD_TIMEOUT_MARGIN)) s"
    else
        echo "FAILED (exit $status) after ${runs:-?} executions"
    fi
    cp "$log" "fuzz/artifacts/$target/last-run.log"
    if grep -q "panicked at" "$log"; then
        echo "---- the panic ----"
        grep -m 1 -A 12 "panicked at" "$log" || true
    fi
    echo "---- the last lines of fuzz/artifacts/$target/last-run.log ----"
    tail -n 25 "$log"
    echo "---- end of the log ----"
    artifact="$(find "fuzz/artifacts/$target" -type f -newer "$started" | head -1)"
    if [[ -n "$artifact" ]]; then
        echo "fuzz: the input is $artifact; reproduce with:"
        echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run ${BUILD_FLAGS[*]} $target $artifact"
        echo "  (or: $BINARIES/$target $artifact)"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crashes in ${TARGETS[*]}"
