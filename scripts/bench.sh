#!/usr/bin/env bash
# The one bench command of samsa-relay. In one run it:
#
#   - builds the relay (release) and the bench helpers in benches/ (release);
#   - drives the relay and the ceiling (benches/ceiling.rs: a bare hyper server that only
#     parses the same JSON into the same types and answers 200) with the same closed-loop
#     load from wrk (benches/webhook.lua: a payload no other request carries), for 1- and
#     20-alert payloads at 2 and 16 connections, and prints webhooks/s, p50, p99, the
#     ratio relay/ceiling (for information), the ratio relay/store floor at the same commit
#     size, the sustained rate (the run's receipts over the time until the incident worker
#     had processed every one) and the worker's holds of the write connection over 5 ms;
#   - sends an open-loop 200 requests/s (benches/drive.rs fixed-rate) and prints p50/p99
#     counted from when each request was due;
#   - measures the durable store alone (benches/drive.rs store-floor: no HTTP, no incident
#     worker) at 1 and 16 webhooks per commit, the bound for any relay that answers after
#     a durable commit;
#   - a storm: 20-alert payloads at 16 connections for BENCH_STORM_SECONDS against one
#     fresh relay, its RSS sampled every 100 ms, then the time until its backlog drains;
#   - times a 10,000-alert payload from its POST to its committed draft, and that relay's
#     peak RSS;
#   - times one notice to 1,000 recipients through a local SMTP server (benches/fanout.rs;
#     Postfix's smtp-sink, and for comparison the tests' aiosmtpd sink);
#   - times one notice to 10,000 confirmed subscribers with mixed choices (benches/fanout.rs
#     --subscribers): the publication that finds them and writes their outbox rows, and
#     the delivery of every mail through Postfix's smtp-sink with no rate limit;
#   - for SQLite (one replica) and a local PostgreSQL (one and three replicas): fresh
#     one-alert webhooks/s and p99 at 16 connections and at 200 requests/s, and the
#     failover time over 20 kills of the correlation lease holder
#     (scripts/lib/bench_cluster.sh);
#   - prints idle and peak RSS, time from start to ready, and the machine.
#
# Every relay runs the release binary with the shipped deploy/samsa-relay.toml (logging
# included) and a fresh database under target/, on the same disk as the repository, so
# that commits are really synced. Every load is bounded in count and in time, only
# 127.0.0.1 is used, and every process started here is stopped by its PID.
#
# Usage: bash scripts/bench.sh
#
# Environment:
#   BENCH_SECONDS=5           length of each closed-loop (wrk) run
#   BENCH_MAX_REQUESTS=600000 most requests of one closed-loop run
#   BENCH_STORM_MAX_REQUESTS=2000000 most requests of the storm (its 503s come at about
#                             18,000/s, so the closed loop's bound ended it after 33 s)
#   BENCH_RATE_SECONDS=10     length of each 200 requests/s run
#   BENCH_STORM_SECONDS=60    length of the storm
#   BENCH_ONLY=replicas       run only the replica section (and the machine's figures)
#   BENCH_ONLY=ingest         run only the store floor, the closed and open loops, the storm
#                             and the 10,000-alert payload (no fan-out, no replicas)
#   SAMSA_RELAY_SKIP_APT=1    skip apt-get when every required binary is present
set -euo pipefail
export LC_ALL=C

BENCH_SECONDS="${BENCH_SECONDS:-5}"
BENCH_MAX_REQUESTS="${BENCH_MAX_REQUESTS:-600000}"
BENCH_STORM_MAX_REQUESTS="${BENCH_STORM_MAX_REQUESTS:-2000000}"
BENCH_RATE_SECONDS="${BENCH_RATE_SECONDS:-10}"
BENCH_STORM_SECONDS="${BENCH_STORM_SECONDS:-60}"
BENCH_ONLY="${BENCH_ONLY:-}"
case "$BENCH_ONLY" in
    "" | replicas | ingest) ;;
    *)
        echo "bench: BENCH_ONLY must be replicas or ingest, not $BENCH_ONLY" >&2
        exit 1
        ;;
esac
RATE=200
BIG_ALERTS=10000
# Issue 20's bounds: the relay against its store at the same commit size, and memory.
FLOOR_RATIO_TARGET=0.7
SUSTAINED_RATIO_TARGET=0.6
PEAK_RSS_TARGET_MB=64
# Every wait for the incident worker to catch up is bounded by this many seconds.
DRAIN_LIMIT_S=120
N_RECIPIENTS=1000
N_SUBSCRIBERS=10000
# The shipped config's example token (loopback only).
TOKEN="example-webhook-token-change-me"

# wrk (load), postfix (only for /usr/sbin/smtp-sink; installed with "No configuration",
# so no mail system is set up or started), python3-aiosmtpd (the tests' SMTP sink),
# sqlite3 (reads the worker backlog), postgresql (the replica section's server and psql).
APT_PACKAGES=(wrk postfix python3-aiosmtpd sqlite3 postgresql)
REQUIRED_BINARIES=(/usr/bin/wrk /usr/sbin/smtp-sink /usr/bin/python3 /usr/bin/aiosmtpd /usr/bin/sqlite3 /usr/bin/psql)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
fail() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# as_root, missing_binaries, install_packages.
# shellcheck source=scripts/lib/apt.sh
source "$REPO_ROOT/scripts/lib/apt.sh"
# postfix is told to configure nothing: only its smtp-sink binary is used.
DEBCONF_SELECTIONS="postfix postfix/main_mailer_type select No configuration"

step "System packages: ${APT_PACKAGES[*]}"
missing="$(missing_binaries)"
if [[ -z "$missing" ]]; then
    echo "every required binary is present" >&2
elif [[ "${SAMSA_RELAY_SKIP_APT:-0}" == "1" ]]; then
    fail "SAMSA_RELAY_SKIP_APT=1 but missing: $missing"
else
    install_packages
    missing="$(missing_binaries)"
    [[ -z "$missing" ]] || fail "still missing after the install: $missing"
fi

step "Build (release): the relay and benches/"
cargo build --release --bin samsa-relay >&2
RELAY_BIN="$REPO_ROOT/target/release/samsa-relay"
BUILD_JSON="$(cargo build --release --bench ceiling --bench drive --bench fanout \
    --message-format=json-render-diagnostics)"
executable() {
    printf '%s\n' "$BUILD_JSON" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 \
        | grep "/$1-[0-9a-f]*\$" | head -n 1
}
CEILING_BIN="$(executable ceiling)"
DRIVE_BIN="$(executable drive)"
FANOUT_BIN="$(executable fanout)"
for binary in "$RELAY_BIN" "$CEILING_BIN" "$DRIVE_BIN" "$FANOUT_BIN"; do
    [[ -x "$binary" ]] || fail "not built: ${binary:-a bench helper}"
done

mkdir -p "$REPO_ROOT/target"
WORK="$(mktemp -d "$REPO_ROOT/target/bench.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -n "${SINK_FD:-}" ]] && exec {SINK_FD}>&- || true
    rm -rf "$WORK"
    [[ -n "${PG_ROOT:-}" ]] && rm -rf "$PG_ROOT"
    remove_policy_rc_d
}
trap cleanup EXIT

# Stops one process started here: TERM, then KILL after 10 s.
stop_pid() {
    local pid="$1"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# key=value lines on stdin -> the value of one key.
value() { grep -m1 "^$1=" | cut -d= -f2 || true; }
# A tool's key=value lines on one line, for the progress log.
brief() { grep '=' <<<"$1" | tr '\n' ' '; }
verdict() { awk -v ok="$1" 'BEGIN { print (ok ? "met" : "MISSED") }'; }
kib_to_mb() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

step "Machine"
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
MEM_TOTAL_KIB="$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)"
MACHINE="$(nproc) CPUs ($CPU_MODEL), $(kib_to_mb "$MEM_TOTAL_KIB") MB RAM, Linux $(uname -r)"
DISK="$(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')"
REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    REVISION="$REVISION + uncommitted changes in src"
fi
echo "$MACHINE; database on $DISK; $(rustc --version); wrk $(wrk -v 2>&1 | head -n1 | awk '{print $2}'); revision $REVISION" >&2
[[ "$DISK" == tmpfs* ]] && echo "warning: the database is on tmpfs; commits are not really synced" >&2
# What one fdatasync costs on the database's disk: no durable commit is faster.
FSYNC="$("$DRIVE_BIN" fsync --dir "$WORK" --count 2000)"
echo "fdatasync: $(brief "$FSYNC")" >&2
# Other work on the machine skews every figure; the load average says how much there was.
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v load="${LOAD_BEFORE%% *}" -v cpus="$(nproc)" 'BEGIN { exit !(load > cpus / 2) }'; then
    echo "warning: load average $LOAD_BEFORE before the bench: other processes compete for the CPUs" >&2
fi

# ---------------------------------------------------------------------------------------
# The relay: each start gets a fresh database and the shipped config.

READY_SAMPLES=()
IDLE_SAMPLES=()
PEAK_KIB=0
PEAK_WHERE=""
RELAY_PID=""
RELAY_URL=""

start_relay() {
    local name="$1" port t0 ready
    port="$("$DRIVE_BIN" free-port)"
    RELAY_URL="http://127.0.0.1:$port"
    mkdir -p "$WORK/$name"
    t0="$EPOCHREALTIME"
    SAMSA_RELAY_LISTEN="127.0.0.1:$port" \
        SAMSA_RELAY_PUBLIC_URL="$RELAY_URL" \
        SAMSA_RELAY_DATABASE_URL="sqlite://$WORK/$name/relay.db" \
        SAMSA_RELAY_SMTP_URL="file://$WORK/$name/mail" \
        "$RELAY_BIN" serve --config deploy/samsa-relay.toml >"$WORK/$name/relay.log" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    if ! ready="$("$DRIVE_BIN" wait-ready --url "$RELAY_URL" --since "$t0" --timeout 10)"; then
        tail -n 20 "$WORK/$name/relay.log" >&2
        fail "the relay ($name) did not become ready"
    fi
    READY_SAMPLES+=("$(value ready_ms <<<"$ready")")
    # Idle: ready, no request yet, the workers waiting.
    sleep 1
    IDLE_SAMPLES+=("$(status_kib "$RELAY_PID" VmRSS)")
}

stop_relay() {
    local name="$1" hwm
    hwm="$(status_kib "$RELAY_PID" VmHWM)"
    if ((hwm > PEAK_KIB)); then
        PEAK_KIB="$hwm"
        PEAK_WHERE="$name"
    fi
    stop_pid "$RELAY_PID"
    RELAY_PID=""
}

relay_metric() { "$DRIVE_BIN" metric --url "$RELAY_URL" --series "$1"; }
# CPU time (user + system, clock ticks) of process $1 so far.
process_ticks() {
    local stat
    read -r stat <"/proc/$1/stat"
    # Fields after "pid (comm) ": state is the 1st, utime the 12th, stime the 13th.
    read -r -a stat <<<"${stat##*) }"
    echo $((stat[11] + stat[12]))
}
# Busy CPU time of the whole machine so far (clock ticks over all CPUs, idle and iowait
# left out).
machine_busy_ticks() {
    local label user nice system idle iowait irq softirq steal _
    read -r label user nice system idle iowait irq softirq steal _ </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}
CLOCK_TICKS="$(getconf CLK_TCK)"
N_CPUS="$(nproc)"
COMMIT_SUM='samsa_relay_storage_operation_duration_seconds_sum{operation="store_notification"}'
# The relay's own storage timings (mean ms, waiting for the write connection included).
internals() {
    local prefix="$1" out key
    out="$("$DRIVE_BIN" storage --url "$RELAY_URL")"
    for key in store_notification_mean_ms store_notification_count ingest_batch_mean incident_step_mean_ms incident_step_count; do
        RESULT[$prefix.$key]="$(value "$key" <<<"$out")"
        RESULT[$prefix.$key]="${RESULT[$prefix.$key]:--}"
    done
}
backlog() {
    sqlite3 "$WORK/$1/relay.db" \
        "ATTACH DATABASE '$WORK/$1/relay-receipts.db' AS receipts;
         SELECT count(*) FROM receipts.webhook_receipts
         WHERE id > (SELECT COALESCE(MAX(receipt_id), 0) FROM main.receipts_processed)"
}

# The running relay's VmRSS into RSS_SAMPLED_MAX (KiB), read without a fork, as the
# storm samples it every 100 ms.
RSS_SAMPLED_MAX=0
sample_rss() {
    local key kib _
    while read -r key kib _; do
        if [[ "$key" == VmRSS: ]]; then
            ((kib > RSS_SAMPLED_MAX)) && RSS_SAMPLED_MAX="$kib"
            return 0
        fi
    done 2>/dev/null <"/proc/$RELAY_PID/status"
}

# Polls the backlog of relay $1 every 50 ms, at most DRAIN_LIMIT_S seconds, sampling its
# RSS meanwhile. DRAINED_S: seconds from $2 (an $EPOCHREALTIME) to the first poll that
# found every receipt processed, or "-" when the worker did not get there in time.
DRAINED_S="-"
wait_drained() {
    local name="$1" since="$2" polled deadline
    deadline="$(awk -v t="$EPOCHREALTIME" -v s="$DRAIN_LIMIT_S" 'BEGIN { printf "%d", t + s }')"
    DRAINED_S="-"
    for _ in $(seq $((DRAIN_LIMIT_S * 20))); do
        polled="$EPOCHREALTIME"
        sample_rss || true
        if [[ "$(backlog "$name" 2>/dev/null || echo busy)" == 0 ]]; then
            DRAINED_S="$(awk -v a="$since" -v b="$polled" 'BEGIN { printf "%.2f", b - a }')"
            return 0
        fi
        ((${polled%.*} < deadline)) || return 0
        sleep 0.05
    done
}

# The incident worker's holds of the write connection (samsa_relay_write_hold_seconds
# {holder="incident_worker"}) into RESULT[$1.hold.*]: how many, how many over 5 ms, the
# bucket bound (ms) the longest stayed within; "-" where the relay has no such histogram.
worker_hold() {
    local prefix="$1" out key
    out="$("$DRIVE_BIN" hold --url "$RELAY_URL" --holder incident_worker)"
    for key in count over max_le_ms; do
        RESULT[$prefix.hold.$key]="$(value "$key" <<<"$out")"
        RESULT[$prefix.hold.$key]="${RESULT[$prefix.hold.$key]:--}"
    done
}

# ---------------------------------------------------------------------------------------
step "The ceiling"
CEILING_PORT="$("$DRIVE_BIN" free-port)"
"$CEILING_BIN" --listen "127.0.0.1:$CEILING_PORT" --max-seconds 900 >"$WORK/ceiling.log" 2>&1 &
CEILING_PID=$!
PIDS+=("$CEILING_PID")
CEILING_URL="http://127.0.0.1:$CEILING_PORT"
for _ in $(seq 100); do
    grep -qs '^READY' "$WORK/ceiling.log" && break
    sleep 0.05
done
grep -qs '^READY' "$WORK/ceiling.log" || fail "the ceiling did not start"

STREAM=100
# wrk against URL; prints its key=value lines.
run_wrk() {
    local url="$1" alerts="$2" connections="$3" seconds="$4" max="$5"
    STREAM=$((STREAM + 100))
    BENCH_ALERTS="$alerts" BENCH_TOKEN="$TOKEN" BENCH_STREAM="$STREAM" \
        BENCH_MAX_PER_THREAD=$((max / 2)) \
        timeout $((seconds + 30)) wrk -t 2 -c "$connections" -d "${seconds}s" --timeout 10s \
        -s benches/webhook.lua "$url/webhook/alertmanager"
}

declare -A RESULT

# shellcheck source=scripts/lib/bench_cluster.sh
source "$REPO_ROOT/scripts/lib/bench_cluster.sh"
if [[ "$BENCH_ONLY" == replicas ]]; then
    stop_pid "$CEILING_PID"
    bench_replicas
    {
        echo
        echo "samsa-relay bench (replicas only), $(date -u +%Y-%m-%dT%H:%MZ)"
        echo "machine: $MACHINE"
        echo "database: $DISK; revision $REVISION"
        echo "load average: $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
        print_replicas
        echo
        echo "Targets:"
        print_replica_targets
    } | tee "$REPO_ROOT/target/bench-last.txt"
    exit 0
fi

step "The durable store alone (no HTTP, no incident worker)"
# Storage::store_notifications called directly, at the group-commit sizes that 2 and 16
# connections allow (1 and 16): no relay that answers after a durable commit can answer
# more webhooks per second than this at that commit size.
FLOOR_SHAPES=("1 1" "16 1" "1 20" "16 20")
for shape in "${FLOOR_SHAPES[@]}"; do
    read -r batch alerts <<<"$shape"
    out="$("$DRIVE_BIN" store-floor --dir "$WORK" --batch "$batch" --alerts "$alerts" --seconds 3)" \
        || fail "store-floor failed"
    echo "batch $batch, $alerts alert(s): $(brief "$out")" >&2
    RESULT[floor.$batch.$alerts]="$(value webhooks_per_s <<<"$out")"
    RESULT[floor.$batch.$alerts.commit]="$(value commit_ms <<<"$out")"
done
SCENARIOS=()
for alerts in 1 20; do
    for connections in 2 16; do
        scenario="${alerts}a-${connections}c"
        SCENARIOS+=("$scenario")
        step "Closed loop: $alerts-alert payloads, $connections connections, ${BENCH_SECONDS} s"
        run_wrk "$CEILING_URL" "$alerts" "$connections" 1 20000 >/dev/null
        out="$(run_wrk "$CEILING_URL" "$alerts" "$connections" "$BENCH_SECONDS" "$BENCH_MAX_REQUESTS")"
        echo "ceiling: $(brief "$out")" >&2
        RESULT[$scenario.ceiling.rps]="$(value rps <<<"$out")"
        RESULT[$scenario.ceiling.p50]="$(value p50_ms <<<"$out")"
        RESULT[$scenario.ceiling.p99]="$(value p99_ms <<<"$out")"

        start_relay "wrk-$scenario"
        run_wrk "$RELAY_URL" "$alerts" "$connections" 1 20000 >/dev/null
        # The measured run starts with the worker idle, so that what it processes until the
        # backlog drains is exactly the run's receipts.
        wait_drained "wrk-$scenario" "$EPOCHREALTIME"
        [[ "$DRAINED_S" != - ]] || echo "warning: the warm-up's backlog did not drain within $DRAIN_LIMIT_S s" >&2
        before="$(relay_metric 'samsa_relay_webhook_requests_total{outcome="accepted"}')"
        commit_sum_before="$(relay_metric "$COMMIT_SUM")"
        relay_ticks="$(process_ticks "$RELAY_PID")"
        machine_ticks="$(machine_busy_ticks)"
        started="$EPOCHREALTIME"
        out="$(run_wrk "$RELAY_URL" "$alerts" "$connections" "$BENCH_SECONDS" "$BENCH_MAX_REQUESTS")"
        # Where the run's time went: the relay's CPU, the rest of the machine's (wrk's load
        # generation included), and how much of the run the group committer spent committing.
        run_s="$(awk -v s="$started" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.3f", e - s }')"
        relay_ticks=$(($(process_ticks "$RELAY_PID") - relay_ticks))
        machine_ticks=$(($(machine_busy_ticks) - machine_ticks))
        RESULT[$scenario.cpu.relay]="$(awk -v t="$relay_ticks" -v h="$CLOCK_TICKS" -v s="$run_s" \
            'BEGIN { printf "%.2f", t / h / s }')"
        RESULT[$scenario.cpu.other]="$(awk -v m="$machine_ticks" -v t="$relay_ticks" -v h="$CLOCK_TICKS" -v s="$run_s" \
            'BEGIN { o = (m - t) / h / s; printf "%.2f", (o > 0 ? o : 0) }')"
        RESULT[$scenario.committer_busy]="$(awk -v a="$(relay_metric "$COMMIT_SUM")" -v b="$commit_sum_before" -v s="$run_s" \
            'BEGIN { printf "%.0f", 100 * (a - b) / s }')"
        echo "relay:   $(brief "$out")" >&2
        RESULT[$scenario.relay.rps]="$(value rps <<<"$out")"
        RESULT[$scenario.relay.p50]="$(value p50_ms <<<"$out")"
        RESULT[$scenario.relay.p99]="$(value p99_ms <<<"$out")"
        RESULT[$scenario.relay.not200]="$(( $(value not_200 <<<"$out") + $(value socket_errors <<<"$out") ))"
        after="$(relay_metric 'samsa_relay_webhook_requests_total{outcome="accepted"}')"
        RESULT[$scenario.relay.stored]="$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%d", a - b }')"
        RESULT[$scenario.relay.duplicates]="$(relay_metric samsa_relay_webhook_duplicates_total | awk '{ printf "%d", $1 }')"
        RESULT[$scenario.relay.backlog]="$(backlog "wrk-$scenario")"
        internals "$scenario.relay"
        RESULT[$scenario.ratio]="$(awk -v r="${RESULT[$scenario.relay.rps]}" -v c="${RESULT[$scenario.ceiling.rps]}" \
            'BEGIN { printf "%.2f", (c > 0 ? r / c : 0) }')"
        # The store floor at the commit size these connections allow: 1 webhook per commit
        # at 2 connections, up to 16 at 16.
        batch=$((connections >= 16 ? 16 : 1))
        RESULT[$scenario.floor]="${RESULT[floor.$batch.$alerts]}"
        RESULT[$scenario.floor.batch]="$batch"
        RESULT[$scenario.floor_ratio]="$(awk -v r="${RESULT[$scenario.relay.rps]}" -v f="${RESULT[$scenario.floor]}" \
            'BEGIN { printf "%.2f", (f > 0 ? r / f : 0) }')"
        wait_drained "wrk-$scenario" "$started"
        RESULT[$scenario.drained_s]="$DRAINED_S"
        if [[ "$DRAINED_S" == - ]]; then
            RESULT[$scenario.sustained]="-"
            RESULT[$scenario.sustained_ratio]="-"
        else
            RESULT[$scenario.sustained]="$(awk -v n="${RESULT[$scenario.relay.stored]}" -v t="$DRAINED_S" \
                'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')"
            RESULT[$scenario.sustained_ratio]="$(awk -v s="${RESULT[$scenario.sustained]}" -v f="${RESULT[$scenario.floor]}" \
                'BEGIN { printf "%.2f", (f > 0 ? s / f : 0) }')"
        fi
        worker_hold "$scenario"
        echo "relay/floor ${RESULT[$scenario.floor_ratio]}; drained ${DRAINED_S} s after the start, sustained ${RESULT[$scenario.sustained]}/s (${RESULT[$scenario.sustained_ratio]} of the floor); worker holds over 5 ms: ${RESULT[$scenario.hold.over]}" >&2
        stop_relay "wrk-$scenario"
    done
done

# ---------------------------------------------------------------------------------------
RATE_MAX=$((RATE * BENCH_RATE_SECONDS))
for alerts in 1 20; do
    step "Open loop: $RATE requests/s of $alerts-alert payloads for ${BENCH_RATE_SECONDS} s"
    start_relay "rate-${alerts}a"
    out="$("$DRIVE_BIN" fixed-rate --url "$RELAY_URL" --token "$TOKEN" --rate "$RATE" \
        --seconds "$BENCH_RATE_SECONDS" --alerts "$alerts" --stream $((alerts + 50)) \
        --max-requests "$RATE_MAX" --timeout 10)"
    echo "relay:   $(brief "$out")" >&2
    for key in ok requests achieved_rps p50_ms p90_ms p99_ms max_ms generator_late_ms; do
        RESULT[rate-${alerts}a.relay.$key]="$(value "$key" <<<"$out")"
    done
    RESULT[rate-${alerts}a.relay.backlog]="$(backlog "rate-${alerts}a")"
    internals "rate-${alerts}a.relay"
    stop_relay "rate-${alerts}a"
done
out="$("$DRIVE_BIN" fixed-rate --url "$CEILING_URL" --rate "$RATE" --seconds "$BENCH_RATE_SECONDS" \
    --alerts 1 --stream 60 --max-requests "$RATE_MAX" --timeout 10)"
echo "ceiling: $(brief "$out")" >&2
for key in ok requests p50_ms p99_ms max_ms; do
    RESULT[rate-1a.ceiling.$key]="$(value "$key" <<<"$out")"
done
stop_pid "$CEILING_PID"

# ---------------------------------------------------------------------------------------
step "Storm: 20-alert payloads at 16 connections for ${BENCH_STORM_SECONDS} s, RSS every 100 ms"
ACCEPTED='samsa_relay_webhook_requests_total{outcome="accepted"}'
BACKLOG_FULL='samsa_relay_webhook_requests_total{outcome="backlog_full"}'
UNAVAILABLE='samsa_relay_webhook_requests_total{outcome="unavailable"}'
INGEST_BACKLOG='samsa_relay_ingest_backlog'
start_relay storm
RSS_SAMPLED_MAX=0
storm_before="$(relay_metric "$ACCEPTED")"
full_before="$("$DRIVE_BIN" metric --url "$RELAY_URL" --series "$BACKLOG_FULL" --absent -)"
unavailable_before="$(relay_metric "$UNAVAILABLE")"
run_wrk "$RELAY_URL" 20 16 "$BENCH_STORM_SECONDS" "$BENCH_STORM_MAX_REQUESTS" >"$WORK/storm-wrk.out" &
STORM_WRK_PID=$!
PIDS+=("$STORM_WRK_PID")
# The in-memory queue between ingest and the worker, once a second (a scrape costs the
# relay more than a read of /proc); "-" when the relay has no such gauge.
gauge_max="-"
for ((sample = 0; sample < (BENCH_STORM_SECONDS + 40) * 10; sample++)); do
    kill -0 "$STORM_WRK_PID" 2>/dev/null || break
    sample_rss || true
    if ((sample % 10 == 0)); then
        gauge="$("$DRIVE_BIN" metric --url "$RELAY_URL" --series "$INGEST_BACKLOG" --absent -)"
        if [[ "$gauge" != - ]]; then
            gauge_max="$(awk -v g="$gauge" -v m="$gauge_max" 'BEGIN { print ((m == "-" || g + 0 > m + 0) ? g : m) }')"
        fi
    fi
    sleep 0.1
done
wait "$STORM_WRK_PID" || fail "wrk failed (storm)"
# Ended: its PID must not be signalled at cleanup, it may be another process's by then.
unset 'PIDS[-1]'
storm_ended="$EPOCHREALTIME"
out="$(cat "$WORK/storm-wrk.out")"
echo "relay:   $(brief "$out")" >&2
RESULT[storm.backlog]="$(backlog storm)"
wait_drained storm "$storm_ended"
RESULT[storm.drained_s]="$DRAINED_S"
storm_after="$(relay_metric "$ACCEPTED")"
full_after="$("$DRIVE_BIN" metric --url "$RELAY_URL" --series "$BACKLOG_FULL" --absent -)"
unavailable_after="$(relay_metric "$UNAVAILABLE")"
RESULT[storm.seconds]="$(value seconds <<<"$out")"
RESULT[storm.accepted]="$(awk -v a="$storm_after" -v b="$storm_before" 'BEGIN { printf "%d", a - b }')"
RESULT[storm.rps]="$(awk -v n="${RESULT[storm.accepted]}" -v t="${RESULT[storm.seconds]}" \
    'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')"
RESULT[storm.answered]="$(value answered <<<"$out")"
RESULT[storm.503]="$(value status_503 <<<"$out")"
RESULT[storm.other]="$(($(value not_200 <<<"$out") - ${RESULT[storm.503]} + $(value socket_errors <<<"$out")))"
if [[ "$full_after" == - ]]; then
    RESULT[storm.backlog_full]="-"
else
    [[ "$full_before" == - ]] && full_before=0
    RESULT[storm.backlog_full]="$(awk -v a="$full_after" -v b="$full_before" 'BEGIN { printf "%d", a - b }')"
fi
RESULT[storm.unavailable]="$(awk -v a="$unavailable_after" -v b="$unavailable_before" 'BEGIN { printf "%d", a - b }')"
RESULT[storm.gauge_max]="$gauge_max"
RESULT[storm.rss_sampled]="$RSS_SAMPLED_MAX"
RESULT[storm.hwm]="$(status_kib "$RELAY_PID" VmHWM)"
worker_hold storm
echo "accepted ${RESULT[storm.accepted]} (${RESULT[storm.rps]}/s), 503: ${RESULT[storm.503]} (backlog_full ${RESULT[storm.backlog_full]}), drained ${RESULT[storm.drained_s]} s after the end, RSS max $(kib_to_mb "$RSS_SAMPLED_MAX") MB sampled, VmHWM $(kib_to_mb "${RESULT[storm.hwm]}") MB" >&2
stop_relay storm

# ---------------------------------------------------------------------------------------
step "A $BIG_ALERTS-alert payload to its draft"
start_relay big
out="$("$DRIVE_BIN" big-payload --url "$RELAY_URL" --token "$TOKEN" --alerts "$BIG_ALERTS" --timeout 60)"
echo "relay:   $(brief "$out")" >&2
for key in body_bytes ack_ms draft_ms ack_to_draft_ms; do
    RESULT[big.$key]="$(value "$key" <<<"$out")"
done
# That relay's own peak: it took nothing but this one webhook.
RESULT[big.hwm]="$(status_kib "$RELAY_PID" VmHWM)"
stop_relay big

# ---------------------------------------------------------------------------------------
# Mail fan-out: the 1,000 recipients and the 10,000 subscribers (not with BENCH_ONLY=ingest).
bench_fanout() {
    step "One notice to $N_RECIPIENTS recipients through Postfix's smtp-sink"
    SINK_PORT="$("$DRIVE_BIN" free-port)"
    SINK_USER=()
    [[ "$(id -u)" -eq 0 ]] && SINK_USER=(-u nobody)
    /usr/sbin/smtp-sink "${SINK_USER[@]}" -c "127.0.0.1:$SINK_PORT" 256 >"$WORK/smtp-sink.log" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    sleep 0.2
    kill -0 "$SINK_PID" 2>/dev/null || fail "smtp-sink did not start: $(cat "$WORK/smtp-sink.log")"
    out="$(timeout 180 "$FANOUT_BIN" --smtp "127.0.0.1:$SINK_PORT" --recipients "$N_RECIPIENTS" \
        --timeout 120 2>"$WORK/fanout-smtp-sink.log")" || { tail -n 20 "$WORK/fanout-smtp-sink.log" >&2; fail "fanout failed"; }
    echo "relay:   $(brief "$out")" >&2
    for key in publish_commit_ms all_sent_ms sent not_sent send_mean_ms claim_mean_ms claim_count record_mean_ms; do
        RESULT[fanout.sink.$key]="$(value "$key" <<<"$out")"
    done
    stop_pid "$SINK_PID"

    step "One notice to $N_SUBSCRIBERS subscribers through Postfix's smtp-sink"
    SINK_PORT="$("$DRIVE_BIN" free-port)"
    /usr/sbin/smtp-sink "${SINK_USER[@]}" -c "127.0.0.1:$SINK_PORT" 256 >"$WORK/smtp-sink-subscribers.log" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    sleep 0.2
    kill -0 "$SINK_PID" 2>/dev/null || fail "smtp-sink did not start: $(cat "$WORK/smtp-sink-subscribers.log")"
    out="$(timeout 300 "$FANOUT_BIN" --smtp "127.0.0.1:$SINK_PORT" --subscribers "$N_SUBSCRIBERS" \
        --timeout 240 2>"$WORK/fanout-subscribers.log")" || { tail -n 20 "$WORK/fanout-subscribers.log" >&2; fail "fanout --subscribers failed"; }
    echo "relay:   $(brief "$out")" >&2
    for key in publish_commit_ms all_sent_ms sent not_sent send_mean_ms claim_mean_ms claim_count record_mean_ms; do
        RESULT[subscribers.$key]="$(value "$key" <<<"$out")"
    done
    stop_pid "$SINK_PID"

    step "The same through the tests' aiosmtpd sink (tests/support/smtp_sink.py)"
    SINK_PORT="$("$DRIVE_BIN" free-port)"
    mkdir -p "$WORK/aiosmtpd"
    mkfifo "$WORK/aiosmtpd.stdin"
    /usr/bin/python3 tests/support/smtp_sink.py --port "$SINK_PORT" --folder "$WORK/aiosmtpd" \
        --max-seconds 300 <"$WORK/aiosmtpd.stdin" >"$WORK/aiosmtpd.log" 2>&1 &
    AIOSMTPD_PID=$!
    PIDS+=("$AIOSMTPD_PID")
    # The sink runs while its stdin is open.
    exec {SINK_FD}>"$WORK/aiosmtpd.stdin"
    for _ in $(seq 100); do
        grep -qs '^READY' "$WORK/aiosmtpd.log" && break
        sleep 0.05
    done
    grep -qs '^READY' "$WORK/aiosmtpd.log" || fail "the aiosmtpd sink did not start: $(cat "$WORK/aiosmtpd.log")"
    out="$(timeout 180 "$FANOUT_BIN" --smtp "127.0.0.1:$SINK_PORT" --recipients "$N_RECIPIENTS" \
        --timeout 120 2>"$WORK/fanout-aiosmtpd.log")" || { tail -n 20 "$WORK/fanout-aiosmtpd.log" >&2; fail "fanout failed"; }
    echo "relay:   $(brief "$out")" >&2
    for key in all_sent_ms sent not_sent send_mean_ms; do
        RESULT[fanout.aiosmtpd.$key]="$(value "$key" <<<"$out")"
    done
    RESULT[fanout.aiosmtpd.received]="$(find "$WORK/aiosmtpd" -name '*.json' | wc -l)"
    exec {SINK_FD}>&-
    SINK_FD=""
    stop_pid "$AIOSMTPD_PID"
}

if [[ "$BENCH_ONLY" != ingest ]]; then
    bench_fanout
    # -----------------------------------------------------------------------------------
    bench_replicas
fi

# ---------------------------------------------------------------------------------------
stats() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
        printf "median %.1f, max %.1f (%d starts)", v[int((NR + 1) / 2)], v[NR], NR }'
}
max_of() { printf '%s\n' "$@" | sort -n | tail -n 1; }
# met / MISSED for an awk condition over a (and b); "not measured" when a value is "-".
judge() {
    local condition="$1" a="${2:--}" b="${3:-0}"
    if [[ "$a" == - || "$b" == - ]]; then
        echo "not measured"
        return 0
    fi
    verdict "$(awk -v a="$a" -v b="$b" "BEGIN { print ($condition) }")"
}
drained_text() {
    if [[ "$1" == - ]]; then echo "not drained within $DRAIN_LIMIT_S s"; else echo "drained after $1 s"; fi
}

READY_MAX="$(max_of "${READY_SAMPLES[@]}")"
IDLE_MAX_KIB="$(max_of "${IDLE_SAMPLES[@]}")"

{
    echo
    echo "samsa-relay bench${BENCH_ONLY:+ ($BENCH_ONLY only)}, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $MACHINE"
    echo "database: $DISK; revision $REVISION"
    echo "fdatasync of 4 KiB on that disk: p50 $(value overwrite_p50_ms <<<"$FSYNC") ms, p99 $(value overwrite_p99_ms <<<"$FSYNC") ms over written blocks; p50 $(value append_p50_ms <<<"$FSYNC") ms, p99 $(value append_p99_ms <<<"$FSYNC") ms appending"
    echo "load average: $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo
    echo "Closed loop (wrk -t2, ${BENCH_SECONDS} s per run, payloads all distinct; latency from wrk):"
    printf '%-10s %11s %8s %8s %10s %8s %8s %7s\n' \
        payload "ceiling/s" "p50 ms" "p99 ms" "relay/s" "p50 ms" "p99 ms" ratio
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-10s %11s %8s %8s %10s %8s %8s %7s\n' "$scenario" \
            "${RESULT[$scenario.ceiling.rps]}" "${RESULT[$scenario.ceiling.p50]}" "${RESULT[$scenario.ceiling.p99]}" \
            "${RESULT[$scenario.relay.rps]}" "${RESULT[$scenario.relay.p50]}" "${RESULT[$scenario.relay.p99]}" \
            "${RESULT[$scenario.ratio]}"
    done
    echo "  (1a-16c: 1-alert payloads over 16 connections; ratio: relay/ceiling, for information)"
    echo
    echo "The durable store alone (Storage::store_notifications, no HTTP, no incident worker), 3 s each:"
    for shape in "${FLOOR_SHAPES[@]}"; do
        read -r batch alerts <<<"$shape"
        printf '  %2s webhook(s) per commit, %2s alert(s): %s webhooks/s, %s ms per commit\n' "$batch" "$alerts" \
            "${RESULT[floor.$batch.$alerts]}" "${RESULT[floor.$batch.$alerts.commit]}"
    done
    echo "  (an upper bound for the relay at 2 connections (1 per commit) and 16 (at most 16))"
    echo
    echo "The relay against its store, and sustained until the incident worker caught up:"
    printf '%-10s %6s %8s %8s %7s %11s %7s %9s %7s %6s %9s\n' payload "commit" "relay/s" "floor/s" "/floor" \
        "sustained/s" "/floor" "drained s" holds ">5 ms" "max <= ms"
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-10s %6s %8s %8s %7s %11s %7s %9s %7s %6s %9s\n' "$scenario" "${RESULT[$scenario.floor.batch]}" \
            "${RESULT[$scenario.relay.rps]}" "${RESULT[$scenario.floor]}" "${RESULT[$scenario.floor_ratio]}" \
            "${RESULT[$scenario.sustained]}" "${RESULT[$scenario.sustained_ratio]}" "${RESULT[$scenario.drained_s]}" \
            "${RESULT[$scenario.hold.count]}" "${RESULT[$scenario.hold.over]}" "${RESULT[$scenario.hold.max_le_ms]}"
    done
    echo "  (commit: webhooks per commit of the floor compared with; sustained: receipts stored in the"
    echo "   measured run over the time from its start until every receipt was processed, polled every"
    echo "   50 ms, at most $DRAIN_LIMIT_S s, the warm-up's backlog drained before it; holds: the incident"
    echo "   worker's holds of the write connection, how many over 5 ms, and the histogram bucket the"
    echo "   longest stayed within; \"-\": not drained, or no samsa_relay_write_hold_seconds)"
    echo
    echo "Where the measured runs' time went ($N_CPUS CPUs):"
    printf '%-10s %12s %12s %16s\n' payload "relay cores" "other cores" "committer busy"
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-10s %12s %12s %15s%%\n' "$scenario" "${RESULT[$scenario.cpu.relay]}" \
            "${RESULT[$scenario.cpu.other]}" "${RESULT[$scenario.committer_busy]}"
    done
    echo "  (relay: its CPU time over the run; other: the rest of the machine's busy CPU, wrk's"
    echo "   load generation included; committer busy: the group commits' time over the run. Near"
    echo "   100 % the commit cycle bounds ingest whatever CPU is left; near $N_CPUS cores in all, the CPU)"
    echo
    echo "Inside the relay during those runs (warm-up included):"
    printf '%-10s %8s %6s %9s %8s %9s %11s %9s %10s\n' payload stored dups backlog commits "per commit" "commit ms" \
        "batches" "batch ms"
    for scenario in "${SCENARIOS[@]}"; do
        printf '%-10s %8s %6s %9s %8s %9s %11s %9s %10s\n' "$scenario" \
            "${RESULT[$scenario.relay.stored]}" "${RESULT[$scenario.relay.duplicates]}" "${RESULT[$scenario.relay.backlog]}" \
            "${RESULT[$scenario.relay.store_notification_count]}" "${RESULT[$scenario.relay.ingest_batch_mean]}" \
            "${RESULT[$scenario.relay.store_notification_mean_ms]}" "${RESULT[$scenario.relay.incident_step_count]}" \
            "${RESULT[$scenario.relay.incident_step_mean_ms]}"
    done
    echo "  (stored: receipts committed during the measured run; dups: must be 0; backlog: receipts"
    echo "   the incident worker had not processed at the end; commits, per commit, commit ms: group"
    echo "   commits of webhooks, webhooks in each and time of each (waiting for the write connection"
    echo "   included), mean; batches, batch ms: incident worker transactions, mean)"
    echo
    echo "Open loop, $RATE requests/s for ${BENCH_RATE_SECONDS} s (latency from when each request was due):"
    for alerts in 1 20; do
        key="rate-${alerts}a.relay"
        printf '  relay,   %2s alert(s): %s/%s answered 200, p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n' \
            "$alerts" "${RESULT[$key.ok]}" "${RESULT[$key.requests]}" "${RESULT[$key.p50_ms]}" "${RESULT[$key.p90_ms]}" \
            "${RESULT[$key.p99_ms]}" "${RESULT[$key.max_ms]}"
        printf '      (generator late by at most %s ms; commit %s ms mean; %s worker batches, %s ms mean; backlog %s)\n' \
            "${RESULT[$key.generator_late_ms]}" "${RESULT[$key.store_notification_mean_ms]}" \
            "${RESULT[$key.incident_step_count]}" "${RESULT[$key.incident_step_mean_ms]}" "${RESULT[$key.backlog]}"
    done
    printf '  ceiling,  1 alert(s): %s/%s answered 200, p50 %s ms, p99 %s ms, max %s ms\n' \
        "${RESULT[rate-1a.ceiling.ok]}" "${RESULT[rate-1a.ceiling.requests]}" "${RESULT[rate-1a.ceiling.p50_ms]}" \
        "${RESULT[rate-1a.ceiling.p99_ms]}" "${RESULT[rate-1a.ceiling.max_ms]}"
    echo
    printf 'Storm: 20-alert payloads at 16 connections for %s s, one fresh relay:\n' "${RESULT[storm.seconds]}"
    printf '  %s accepted (%s webhooks/s), %s answered 503 (backlog_full %s, unavailable %s), %s other failures\n' \
        "${RESULT[storm.accepted]}" "${RESULT[storm.rps]}" "${RESULT[storm.503]}" "${RESULT[storm.backlog_full]}" \
        "${RESULT[storm.unavailable]}" "${RESULT[storm.other]}"
    printf '  peak RSS %s MB (VmHWM; the largest VmRSS sampled every 100 ms %s MB); ingest backlog gauge at most %s (each second)\n' \
        "$(kib_to_mb "${RESULT[storm.hwm]}")" "$(kib_to_mb "${RESULT[storm.rss_sampled]}")" "${RESULT[storm.gauge_max]}"
    printf '  %s receipts unprocessed at the end, %s; worker holds %s, %s over 5 ms, the longest <= %s ms\n' \
        "${RESULT[storm.backlog]}" "$(drained_text "${RESULT[storm.drained_s]}")" "${RESULT[storm.hold.count]}" \
        "${RESULT[storm.hold.over]}" "${RESULT[storm.hold.max_le_ms]}"
    echo
    printf '%s-alert payload (%s bytes): 200 after %s ms, draft committed %s ms after the POST (%s ms after the 200)\n' \
        "$BIG_ALERTS" "${RESULT[big.body_bytes]}" "${RESULT[big.ack_ms]}" "${RESULT[big.draft_ms]}" "${RESULT[big.ack_to_draft_ms]}"
    printf '  peak RSS of the %s-alert webhook: %s MB (VmHWM of that relay alone)\n' "$BIG_ALERTS" \
        "$(kib_to_mb "${RESULT[big.hwm]}")"
    if [[ "$BENCH_ONLY" != ingest ]]; then
        printf 'One notice to %s recipients, publish to last delivery:\n' "$N_RECIPIENTS"
        printf '  smtp-sink (Postfix):     %s ms, %s sent, %s not (publish commit %s ms; send %s ms mean; %s claims, %s ms mean; record %s ms mean)\n' \
            "${RESULT[fanout.sink.all_sent_ms]}" "${RESULT[fanout.sink.sent]}" "${RESULT[fanout.sink.not_sent]}" \
            "${RESULT[fanout.sink.publish_commit_ms]}" "${RESULT[fanout.sink.send_mean_ms]}" "${RESULT[fanout.sink.claim_count]}" \
            "${RESULT[fanout.sink.claim_mean_ms]}" "${RESULT[fanout.sink.record_mean_ms]}"
        printf '  aiosmtpd (tests'"'"' sink): %s ms, %s sent, %s received (send %s ms mean)\n' \
            "${RESULT[fanout.aiosmtpd.all_sent_ms]}" "${RESULT[fanout.aiosmtpd.sent]}" "${RESULT[fanout.aiosmtpd.received]}" \
            "${RESULT[fanout.aiosmtpd.send_mean_ms]}"
        printf 'One notice to %s confirmed subscribers (mixed choices, all concerned), smtp-sink (Postfix):\n' "$N_SUBSCRIBERS"
        printf '  publication with the outbox written %s ms; last delivery %s ms after Publish; %s sent, %s not (send %s ms mean; %s claims, %s ms mean; record %s ms mean)\n' \
            "${RESULT[subscribers.publish_commit_ms]}" "${RESULT[subscribers.all_sent_ms]}" "${RESULT[subscribers.sent]}" \
            "${RESULT[subscribers.not_sent]}" "${RESULT[subscribers.send_mean_ms]}" "${RESULT[subscribers.claim_count]}" \
            "${RESULT[subscribers.claim_mean_ms]}" "${RESULT[subscribers.record_mean_ms]}"
    fi
    printf 'RSS: idle %s MB (largest of %d starts, 1 s after ready), peak %s MB (VmHWM, in run %s)\n' \
        "$(kib_to_mb "$IDLE_MAX_KIB")" "${#IDLE_SAMPLES[@]}" "$(kib_to_mb "$PEAK_KIB")" "$PEAK_WHERE"
    printf 'Start to ready (spawn to first 200 on /readyz, fresh database): %s ms\n' "$(stats "${READY_SAMPLES[@]}")"
    [[ "$BENCH_ONLY" == ingest ]] || print_replicas
    echo
    echo "Targets:"
    for scenario in 1a-16c 20a-16c; do
        printf '  %-40s %s (%s)\n' "relay >= $FLOOR_RATIO_TARGET of the store floor, $scenario" \
            "$(judge "a >= b" "${RESULT[$scenario.floor_ratio]}" "$FLOOR_RATIO_TARGET")" "${RESULT[$scenario.floor_ratio]}"
        if [[ "${RESULT[$scenario.drained_s]}" == - ]]; then
            printf '  %-40s %s (not drained within %s s)\n' "sustained >= $SUSTAINED_RATIO_TARGET of the floor, $scenario" \
                MISSED "$DRAIN_LIMIT_S"
        else
            printf '  %-40s %s (%s)\n' "sustained >= $SUSTAINED_RATIO_TARGET of the floor, $scenario" \
                "$(judge "a >= b" "${RESULT[$scenario.sustained_ratio]}" "$SUSTAINED_RATIO_TARGET")" \
                "${RESULT[$scenario.sustained_ratio]}"
        fi
    done
    for scenario in "${SCENARIOS[@]}" storm; do
        printf '  %-40s %s (%s)\n' "worker holds over 5 ms = 0, $scenario" \
            "$(judge "a == 0" "${RESULT[$scenario.hold.over]}")" "${RESULT[$scenario.hold.over]}"
    done
    printf '  %-40s %s (%s MB)\n' "peak RSS < $PEAK_RSS_TARGET_MB MB, storm" \
        "$(judge "a < b * 1024" "${RESULT[storm.hwm]}" "$PEAK_RSS_TARGET_MB")" "$(kib_to_mb "${RESULT[storm.hwm]}")"
    printf '  %-40s %s (%s MB)\n' "peak RSS < $PEAK_RSS_TARGET_MB MB, $BIG_ALERTS-alert webhook" \
        "$(judge "a < b * 1024" "${RESULT[big.hwm]}" "$PEAK_RSS_TARGET_MB")" "$(kib_to_mb "${RESULT[big.hwm]}")"
    for alerts in 1 20; do
        printf '  %-40s %s (%s ms)\n' "p99 < 10 ms at $RATE/s, $alerts alert(s)" \
            "$(verdict "$(awk -v p="${RESULT[rate-${alerts}a.relay.p99_ms]}" -v ok="${RESULT[rate-${alerts}a.relay.ok]}" \
                -v n="${RESULT[rate-${alerts}a.relay.requests]}" 'BEGIN { print (p < 10 && ok == n) }')")" \
            "${RESULT[rate-${alerts}a.relay.p99_ms]}"
    done
    printf '  %-40s %s (%s ms)\n' "$BIG_ALERTS alerts drafted < 1 s" \
        "$(verdict "$(awk -v t="${RESULT[big.draft_ms]}" 'BEGIN { print (t < 1000) }')")" "${RESULT[big.draft_ms]}"
    if [[ "$BENCH_ONLY" != ingest ]]; then
        printf '  %-40s %s (%s ms)\n' "$N_RECIPIENTS recipients < 10 s (smtp-sink)" \
            "$(verdict "$(awk -v t="${RESULT[fanout.sink.all_sent_ms]}" -v s="${RESULT[fanout.sink.sent]}" -v n="$N_RECIPIENTS" \
                'BEGIN { print (t < 10000 && s == n) }')")" "${RESULT[fanout.sink.all_sent_ms]}"
        printf '  %-40s %s (%s ms)\n' "$N_SUBSCRIBERS subscribers: outbox < 1 s" \
            "$(verdict "$(awk -v t="${RESULT[subscribers.publish_commit_ms]}" 'BEGIN { print (t < 1000) }')")" \
            "${RESULT[subscribers.publish_commit_ms]}"
        printf '  %-40s %s (%s ms)\n' "$N_SUBSCRIBERS subscribers delivered < 10 s" \
            "$(verdict "$(awk -v t="${RESULT[subscribers.all_sent_ms]}" -v s="${RESULT[subscribers.sent]}" -v n="$N_SUBSCRIBERS" \
                'BEGIN { print (t < 10000 && s == n) }')")" "${RESULT[subscribers.all_sent_ms]}"
    fi
    printf '  %-40s %s (%s MB)\n' "idle RSS < 30 MB" \
        "$(verdict "$(awk -v k="$IDLE_MAX_KIB" 'BEGIN { print (k < 30 * 1024) }')")" "$(kib_to_mb "$IDLE_MAX_KIB")"
    printf '  %-40s %s (%s ms, the slowest start)\n' "start to ready < 300 ms" \
        "$(verdict "$(awk -v t="$READY_MAX" 'BEGIN { print (t < 300) }')")" "$READY_MAX"
    [[ "$BENCH_ONLY" == ingest ]] || print_replica_targets
    echo
    echo "Information, not targets (the store floor replaced half the ceiling):"
    for scenario in "${SCENARIOS[@]}"; do
        printf '  %-40s %s\n' "relay/ceiling, $scenario" "${RESULT[$scenario.ratio]}"
    done
    printf '  %-40s %s MB (%s)\n' "peak RSS of all runs" "$(kib_to_mb "$PEAK_KIB")" "$PEAK_WHERE"
} | tee "$REPO_ROOT/target/bench-last.txt"
