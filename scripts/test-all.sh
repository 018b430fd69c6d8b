#!/usr/bin/env bash
# The one test command of samsa-relay: installs the system packages the tests need, then
# runs the formatter check, clippy (warnings are errors) with and without the
# `system-tests` feature, the supply-chain checks (scripts/deny.sh), each fuzz target for
# 15 s (scripts/fuzz.sh) and every test, the system tier included
# (`cargo test --features system-tests`).
#
# A plain `cargo test` needs nothing of this: it runs the core tier, which needs only Rust
# (no root, no system package, no network). The system tier is the tests that need the
# programs below or root (tests/it/faults.rs mounts a tmpfs); with the feature on, a
# missing program fails its test with the package's name.
#
# Usage: bash scripts/test-all.sh
#
# Environment:
#   SAMSA_RELAY_SKIP_APT=1  skip apt-get when every required binary is already installed
#                           (by default the packages are always ensured).
set -euo pipefail

# System packages the system tier runs for real. Add new ones here, and their binaries
# below. tests/it/deploy.rs checks deploy/ with promtool (prometheus), amtool
# (prometheus-alertmanager), the blackbox exporter, systemd-analyze (systemd) and PyYAML
# (python3-yaml, for the Kubernetes manifests). tests/it/email.rs and
# tests/it/email_tls.rs run a real SMTP server, tests/support/smtp_sink.py, on aiosmtpd
# (python3-aiosmtpd). tests/it/browser.rs drives headless Chromium (chromium) through
# chromedriver (chromium-driver), and injects axe-core into every page: npm (with nodejs)
# installs it, pinned by tests/browser/package-lock.json. tests/it/alertmanager.rs,
# tests/it/dashboards.rs and tests/it/end_to_end.rs run Alertmanager, Prometheus and the
# blackbox exporter.
# tests/it/storage.rs and tests/it/postgres.rs run a real PostgreSQL server (postgresql;
# its binaries live under a versioned folder, hence the pattern below).
APT_PACKAGES=(
    prometheus-alertmanager
    python3-aiosmtpd
    prometheus
    prometheus-blackbox-exporter
    python3-yaml
    systemd
    chromium
    chromium-driver
    nodejs
    postgresql
)
# Binaries that must exist once the packages are installed (a quoted glob pattern matches
# if any file does).
REQUIRED_BINARIES=(
    /usr/bin/prometheus-alertmanager
    /usr/bin/amtool
    /usr/bin/promtool
    /usr/bin/prometheus-blackbox-exporter
    /usr/bin/systemd-analyze
    /usr/bin/python3
    /usr/bin/aiosmtpd
    /usr/bin/chromium
    /usr/bin/chromedriver
    /usr/bin/node
    /usr/bin/npm
    '/usr/lib/postgresql/*/bin/initdb'
    '/usr/lib/postgresql/*/bin/postgres'
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() {
    printf '\n==> %s\n' "$*"
}

fail() {
    printf 'test-all: %s\n' "$*" >&2
    exit 1
}

# as_root, missing_binaries, install_packages.
# shellcheck source=scripts/lib/apt.sh
source "$REPO_ROOT/scripts/lib/apt.sh"

step "System packages: ${APT_PACKAGES[*]}"
missing="$(missing_binaries)"
if [[ "${SAMSA_RELAY_SKIP_APT:-0}" == "1" && -z "$missing" ]]; then
    echo "SAMSA_RELAY_SKIP_APT=1 and every required binary is present; skipping apt-get"
else
    if [[ "${SAMSA_RELAY_SKIP_APT:-0}" == "1" ]]; then
        printf 'SAMSA_RELAY_SKIP_APT=1 but missing:\n%s\ninstalling anyway\n' "$missing"
    fi
    install_packages
    # npm: NodeSource's nodejs (on some machines) carries npm and conflicts with Debian's
    # npm package; Debian's own nodejs needs that package. Install it only when missing.
    if ! command -v npm >/dev/null; then
        APT_PACKAGES=(npm)
        install_packages
    fi
    missing="$(missing_binaries)"
    [[ -z "$missing" ]] || fail "still missing after the install: $missing"
fi

step "Rust toolchain"
command -v cargo >/dev/null 2>&1 || fail "cargo not found; install the Rust toolchain (rustup)"
ensure_component() {
    local subcommand="$1" component="$2"
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 \
            || fail "cargo $subcommand is missing and rustup is not available to add $component"
        rustup component add "$component"
    fi
    cargo "$subcommand" --version
}
cargo --version
ensure_component fmt rustfmt
ensure_component clippy clippy

step "cargo fmt --check"
cargo fmt --check

# Both tiers compile warning-free: code used only by the system tier is gated, not allowed
# to be dead.
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo clippy --all-targets --features system-tests -- -D warnings"
cargo clippy --all-targets --features system-tests -- -D warnings

# Before `cargo test`, so that the test summary stays the last thing printed.
step "Supply chain: cargo deny (licenses, bans, sources; advisories when the database can be fetched)"
bash scripts/deny.sh

step "Fuzzing: every fuzz target for 15 s (scripts/fuzz.sh)"
bash scripts/fuzz.sh 15

# axe-core for tests/it/browser.rs, exactly the version package-lock.json pins (npm ci
# checks its integrity hash); into tests/browser/node_modules, which git ignores.
step "npm ci in tests/browser (axe-core for the browser tests)"
(cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund)

step "cargo test --features system-tests"
cargo test --features system-tests

step "All checks passed"
