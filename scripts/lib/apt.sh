# Shared by scripts/test-all.sh and scripts/bench.sh (sourced, not run): root, the
# binaries still missing, and an apt-get install during which no packaged daemon starts.
# The caller defines fail() and the arrays APT_PACKAGES and REQUIRED_BINARIES, and may set
# DEBCONF_SELECTIONS (lines for debconf-set-selections) before install_packages.

# Runs a command as root: directly when already root, else through sudo.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "need root or sudo to run: $*"
    fi
}

# Prints each of REQUIRED_BINARIES that is not installed. An entry may be a glob pattern
# (/usr/lib/postgresql/*/bin/postgres): it is there if any match is executable.
missing_binaries() {
    local binary candidate found
    for binary in "${REQUIRED_BINARIES[@]}"; do
        found=0
        for candidate in $binary; do
            [[ -x "$candidate" ]] && found=1
        done
        [[ "$found" -eq 1 ]] || printf '%s\n' "$binary"
    done
}

POLICY_RC_D=/usr/sbin/policy-rc.d
CREATED_POLICY_RC_D=0

remove_policy_rc_d() {
    if [[ "$CREATED_POLICY_RC_D" -eq 1 ]]; then
        as_root rm -f "$POLICY_RC_D"
        CREATED_POLICY_RC_D=0
    fi
}

# apt-get update, then install APT_PACKAGES. Packaged daemons must not start (or fail to
# start) during the install: policy-rc.d answering 101 forbids it for invoke-rc.d and
# deb-systemd-invoke. An existing policy-rc.d is left as it is.
install_packages() {
    if [[ ! -e "$POLICY_RC_D" ]]; then
        trap remove_policy_rc_d EXIT
        printf '#!/bin/sh\n# Written by samsa-relay scripts for the install only.\nexit 101\n' \
            | as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 0755 "$POLICY_RC_D"
        CREATED_POLICY_RC_D=1
    fi
    if [[ -n "${DEBCONF_SELECTIONS:-}" ]]; then
        printf '%s\n' "$DEBCONF_SELECTIONS" | as_root debconf-set-selections
    fi
    local apt_options=(
        -y
        -q
        --no-install-recommends
        -o DPkg::Lock::Timeout=300
        -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold
    )
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_options[@]}" \
        "${APT_PACKAGES[@]}"
    remove_policy_rc_d
    trap - EXIT
}
