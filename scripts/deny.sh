#!/usr/bin/env bash
# Supply-chain checks with cargo-deny, configured in deny.toml: licences, banned crates
# and duplicate versions, sources, and known vulnerabilities (RustSec advisories).
#
# Usage: bash scripts/deny.sh
#
# licenses, bans and sources need nothing but the crates cargo already fetched; they
# always run and fail the script on a real problem. advisories need the RustSec advisory
# database, a git clone from GitHub. The script fetches it first; when GitHub cannot be
# reached it checks against the copy from an earlier fetch if there is one (saying how
# old it is), and otherwise skips the advisories check and says so loudly. A missing
# network never fails the script on its own.
#
# Environment:
#   DENY_REQUIRE_ADVISORIES=1  fail when the advisory database cannot be fetched (for a
#                              CI runner that has network access and must not skip)
#   DENY_FETCH_TIMEOUT=SECONDS how long to try fetching the database; default 120
#   DENY_GRAPHS=1              show which dependency pulls in each crate reported
#
# It installs cargo-deny with `cargo install cargo-deny --locked --debug` when it is missing.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

REQUIRE_ADVISORIES="${DENY_REQUIRE_ADVISORIES:-0}"
FETCH_TIMEOUT="${DENY_FETCH_TIMEOUT:-120}"
GRAPH_FLAGS=(--hide-inclusion-graph)
if [[ "${DENY_GRAPHS:-0}" == "1" ]]; then
    GRAPH_FLAGS=()
fi

if ! cargo deny --version >/dev/null 2>&1; then
    # --debug: an unoptimised build installs in about half the time of a release build
    # (it compiles ~140 crates on a fresh machine), and checking this project's graph
    # takes seconds either way.
    echo "deny: cargo-deny is missing; installing it (cargo install cargo-deny --locked --debug)"
    cargo install cargo-deny --locked --debug
fi
cargo deny --version

status=0

echo "deny: licenses, bans (duplicate versions are warnings), sources"
if ! cargo deny --color never check "${GRAPH_FLAGS[@]}" licenses bans sources; then
    echo "deny: FAILED: licenses, bans or sources (see the errors above; DENY_GRAPHS=1" \
        "shows which dependency pulls each crate in)" >&2
    status=1
fi

# Where cargo-deny keeps the database (deny.toml sets no db-path).
DB_ROOT="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
database_age() {
    local head
    head="$(find "$DB_ROOT" -mindepth 2 -maxdepth 2 -name .git -print -quit 2>/dev/null)" || true
    [[ -n "$head" ]] || return 1
    git -C "$(dirname "$head")" log -1 --format=%cr 2>/dev/null
}

echo "deny: fetching the RustSec advisory database (at most ${FETCH_TIMEOUT} s)"
advisories=run
if timeout --kill-after=10 "$FETCH_TIMEOUT" cargo deny --color never fetch db; then
    echo "deny: advisory database fetched"
elif age="$(database_age)"; then
    echo "deny: WARNING: cannot fetch the advisory database; checking against the copy" \
        "fetched earlier (last commit $age)"
else
    advisories=skip
fi

if [[ "$advisories" == run ]]; then
    echo "deny: advisories"
    if ! cargo deny --color never --offline check "${GRAPH_FLAGS[@]}" advisories; then
        echo "deny: FAILED: advisories (a vulnerable, unsound or unmaintained dependency;" \
            "see above)" >&2
        status=1
    fi
else
    echo "deny: ################################################################"
    echo "deny: SKIPPED: advisories. The RustSec advisory database could not be"
    echo "deny: fetched from GitHub (no network?) and there is no earlier copy in"
    echo "deny: $DB_ROOT. Known vulnerabilities were NOT checked."
    echo "deny: ################################################################"
    if [[ "$REQUIRE_ADVISORIES" == "1" ]]; then
        echo "deny: FAILED: DENY_REQUIRE_ADVISORIES=1 and no advisory database" >&2
        status=1
    fi
fi

if [[ "$status" -eq 0 ]]; then
    if [[ "$advisories" == run ]]; then
        echo "deny: all checks passed"
    else
        echo "deny: licenses, bans and sources passed; advisories skipped (see above)"
    fi
fi
exit "$status"
