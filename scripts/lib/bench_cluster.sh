# The bench's replica section, sourced by scripts/bench.sh (which defines DRIVE_BIN,
# RELAY_BIN, WORK, PIDS, TOKEN, RESULT, step, fail, value, brief, stop_pid, run_wrk).
#
# For SQLite (one replica: one process per file) and PostgreSQL (a local server with
# synchronous commit, one and three replicas): fresh one-alert webhooks/s and p99 at 16
# connections in all (wrk, the connections split over the replicas), and p99 at 200
# requests/s in all (the open-loop client, the rate split over the replicas). Then the
# failover time over 20 kills: SIGKILL the replica holding the correlation lease, post
# a fresh webhook to a survivor, and time until it is processed (the next incident step).

PG_BIN=""
PG_PID=""
PG_PORT=""
PG_ROOT=""
PG_RUN=()

# Starts a PostgreSQL server (Debian's postgresql) in a folder of its own, on 127.0.0.1,
# as the `postgres` user when this runs as root. Its data is on the root disk (/var/tmp),
# so commits are really synced.
start_postgres() {
    PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)"
    [[ -x "$PG_BIN/initdb" ]] || fail "PostgreSQL's initdb not found under /usr/lib/postgresql (package postgresql)"
    PG_ROOT="$(mktemp -d /var/tmp/samsa-relay-bench-pg.XXXXXX)"
    PG_RUN=()
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$PG_ROOT"
        PG_RUN=(runuser -u postgres --)
    fi
    "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust -E UTF8 \
        >"$PG_ROOT/initdb.log" 2>&1 || fail "initdb failed: $(tail -n 5 "$PG_ROOT/initdb.log")"
    PG_PORT="$("$DRIVE_BIN" free-port)"
    "${PG_RUN[@]}" "$PG_BIN/postgres" -D "$PG_ROOT/data" -p "$PG_PORT" -k "$PG_ROOT" \
        -c listen_addresses=127.0.0.1 -c max_connections=200 -c synchronous_commit=on -c fsync=on \
        >"$PG_ROOT/postgres.log" 2>&1 &
    PG_PID=$!
    PIDS+=("$PG_PID")
    for _ in $(seq 200); do
        psql_query postgres "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "PostgreSQL did not start: $(tail -n 5 "$PG_ROOT/postgres.log")"
}

stop_postgres() {
    [[ -n "$PG_PID" ]] && stop_pid "$PG_PID"
    PG_PID=""
    [[ -n "$PG_ROOT" ]] && rm -rf "$PG_ROOT"
}

psql_query() {
    local database="$1" sql="$2"
    psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$database" -c "$sql"
}

CLUSTER_PIDS=()
CLUSTER_URLS=()

# Starts $2 replicas named $1-r0 … on database URL $3 (sqlite://… or postgres://…).
start_replicas() {
    local name="$1" count="$2" database_url="$3" index port t0
    CLUSTER_PIDS=()
    CLUSTER_URLS=()
    for ((index = 0; index < count; index++)); do
        start_replica "$name" "$index" "$database_url"
    done
}

# Starts replica $2 of $1 (again, after a kill) and waits until it is ready.
start_replica() {
    local name="$1" index="$2" database_url="$3" port t0
    port="$("$DRIVE_BIN" free-port)"
    mkdir -p "$WORK/$name"
    t0="$EPOCHREALTIME"
    SAMSA_RELAY_LISTEN="127.0.0.1:$port" \
        SAMSA_RELAY_PUBLIC_URL="http://127.0.0.1:$port" \
        SAMSA_RELAY_DATABASE_URL="$database_url" \
        SAMSA_RELAY_SMTP_URL="file://$WORK/$name/mail" \
        SAMSA_RELAY_REPLICA_NAME="$name-r$index" \
        "$RELAY_BIN" serve --config deploy/samsa-relay.toml >>"$WORK/$name/r$index.log" 2>&1 &
    CLUSTER_PIDS[index]=$!
    PIDS+=("$!")
    CLUSTER_URLS[index]="http://127.0.0.1:$port"
    if ! "$DRIVE_BIN" wait-ready --url "${CLUSTER_URLS[index]}" --since "$t0" --timeout 30 >/dev/null; then
        tail -n 20 "$WORK/$name/r$index.log" >&2
        fail "replica $index of $name did not become ready"
    fi
}

stop_replicas() {
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do
        [[ -n "$pid" ]] && stop_pid "$pid"
    done
    CLUSTER_PIDS=()
}

# wrk at $2 connections in all, split over the replicas, all at once; prints the sum of
# webhooks/s and the largest p99.
cluster_wrk() {
    local scenario="$1" connections="$2" count="${#CLUSTER_URLS[@]}" index share outs=() pids=()
    for ((index = 0; index < count; index++)); do
        share=$((connections / count + (index < connections % count ? 1 : 0)))
        # Each wrk its own payload stream (run_wrk's own step is lost in the subshell).
        STREAM=$((STREAM + 1000))
        run_wrk "${CLUSTER_URLS[index]}" 1 "$share" "$BENCH_SECONDS" "$BENCH_MAX_REQUESTS" \
            >"$WORK/$scenario-wrk-$index.out" &
        pids+=("$!")
    done
    for index in "${!pids[@]}"; do
        wait "${pids[index]}" || fail "wrk failed ($scenario, replica $index)"
    done
    cat "$WORK/$scenario"-wrk-*.out | awk -F= '
        $1 == "rps" { rps += $2 }
        $1 == "p99_ms" && $2 > p99 { p99 = $2 }
        $1 == "not_200" { bad += $2 }
        $1 == "socket_errors" { bad += $2 }
        END { printf "rps=%.0f\np99_ms=%.1f\nnot_200=%d\n", rps, p99, bad }'
}

# The open-loop client at $2 requests/s in all, split over the replicas; prints the
# largest p99 and how many of how many answered 200.
cluster_rate() {
    local scenario="$1" rate="$2" count="${#CLUSTER_URLS[@]}" index pids=()
    for ((index = 0; index < count; index++)); do
        "$DRIVE_BIN" fixed-rate --url "${CLUSTER_URLS[index]}" --token "$TOKEN" \
            --rate $((rate / count)) --seconds "$BENCH_RATE_SECONDS" --alerts 1 \
            --stream $((7000 + STREAM + index)) --max-requests $((rate * BENCH_RATE_SECONDS)) \
            --timeout 10 >"$WORK/$scenario-rate-$index.out" &
        pids+=("$!")
    done
    STREAM=$((STREAM + 100))
    for index in "${!pids[@]}"; do
        wait "${pids[index]}" || fail "the open-loop client failed ($scenario, replica $index)"
    done
    cat "$WORK/$scenario"-rate-*.out | awk -F= '
        $1 == "p99_ms" && $2 > p99 { p99 = $2 }
        $1 == "ok" { ok += $2 }
        $1 == "requests" { requests += $2 }
        END { printf "p99_ms=%.1f\nok=%d\nrequests=%d\n", p99, ok, requests }'
}

CLUSTER_SCENARIOS=()

bench_replicas() {
    local backend replicas scenario database_url out
    step "Replicas: SQLite and PostgreSQL, one and three replicas"
    start_postgres
    for backend in sqlite postgres; do
        for replicas in 1 3; do
            # SQLite is one process per file: three replicas need PostgreSQL.
            [[ "$backend" == sqlite && "$replicas" -gt 1 ]] && continue
            scenario="$backend-$replicas"
            CLUSTER_SCENARIOS+=("$scenario")
            if [[ "$backend" == sqlite ]]; then
                mkdir -p "$WORK/$scenario"
                database_url="sqlite://$WORK/$scenario/relay.db"
            else
                psql_query postgres "CREATE DATABASE \"$scenario\"" >/dev/null
                database_url="postgres://postgres@127.0.0.1:$PG_PORT/$scenario"
            fi
            start_replicas "$scenario" "$replicas" "$database_url"
            cluster_wrk "$scenario-warm" 16 >/dev/null
            out="$(cluster_wrk "$scenario" 16)"
            echo "$scenario, 16 connections: $(brief "$out")" >&2
            RESULT[$scenario.rps]="$(value rps <<<"$out")"
            RESULT[$scenario.p99]="$(value p99_ms <<<"$out")"
            RESULT[$scenario.not200]="$(value not_200 <<<"$out")"
            out="$(cluster_rate "$scenario" "$RATE")"
            echo "$scenario, $RATE/s: $(brief "$out")" >&2
            RESULT[$scenario.rate.p99]="$(value p99_ms <<<"$out")"
            RESULT[$scenario.rate.ok]="$(value ok <<<"$out")"
            RESULT[$scenario.rate.requests]="$(value requests <<<"$out")"
            stop_replicas
        done
    done
    bench_failover
    stop_postgres
}

FAILOVER_SAMPLES=()

# 20 kills of the replica holding the correlation lease, each followed by a fresh webhook
# to a survivor: the time from the kill until that webhook is processed.
bench_failover() {
    local scenario=failover kills=20 kill holder victim survivor t0 backlog elapsed index
    step "Failover: $kills kills of the correlation lease holder (3 replicas, PostgreSQL, shipped lease_ttl)"
    psql_query postgres "CREATE DATABASE \"$scenario\"" >/dev/null
    local database_url="postgres://postgres@127.0.0.1:$PG_PORT/$scenario"
    start_replicas "$scenario" 3 "$database_url"
    for ((kill = 1; kill <= kills; kill++)); do
        holder=""
        for _ in $(seq 200); do
            holder="$(psql_query "$scenario" \
                "SELECT holder FROM leases WHERE name = 'correlation' AND expires_at > relay_time_text(clock_timestamp())" 2>/dev/null || true)"
            [[ -n "$holder" ]] && break
            sleep 0.05
        done
        [[ -n "$holder" ]] || fail "no replica holds the correlation lease"
        victim="${holder%%/*}"
        victim="${victim##*-r}"
        survivor=$(((victim + 1) % 3))
        kill -KILL "${CLUSTER_PIDS[victim]}"
        t0="$EPOCHREALTIME"
        "$DRIVE_BIN" fixed-rate --url "${CLUSTER_URLS[survivor]}" --token "$TOKEN" --rate 1 --seconds 1 \
            --alerts 1 --stream $((9000 + kill)) --max-requests 1 --timeout 30 >/dev/null \
            || fail "the webhook after kill $kill was not taken"
        elapsed=""
        for _ in $(seq 1200); do
            backlog="$(psql_query "$scenario" \
                "SELECT count(*) FROM receipts_backlog" \
                2>/dev/null || echo 1)"
            if [[ "$backlog" == 0 ]]; then
                elapsed="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')"
                break
            fi
            sleep 0.025
        done
        [[ -n "$elapsed" ]] || fail "the webhook after kill $kill was not processed within 30 s"
        FAILOVER_SAMPLES+=("$elapsed")
        echo "kill $kill: replica $victim held the lease; next step processed after $elapsed s" >&2
        wait "${CLUSTER_PIDS[victim]}" 2>/dev/null || true
        start_replica "$scenario" "$victim" "$database_url"
    done
    stop_replicas
}

print_replicas() {
    local scenario
    echo
    echo "Replicas (fresh 1-alert webhooks; connections and rate split over the replicas):"
    printf '%-12s %12s %14s %18s\n' scenario "webhooks/s" "p99 ms (16c)" "p99 ms ($RATE/s)"
    for scenario in "${CLUSTER_SCENARIOS[@]}"; do
        printf '%-12s %12s %14s %18s\n' "$scenario" "${RESULT[$scenario.rps]}" "${RESULT[$scenario.p99]}" \
            "${RESULT[$scenario.rate.p99]} (${RESULT[$scenario.rate.ok]}/${RESULT[$scenario.rate.requests]})"
    done
    echo "  (postgres: a local server, synchronous_commit on, on the same disk; sqlite-3: not a"
    echo "   configuration, SQLite is one process per file)"
    printf 'Failover (correlation lease holder killed -> next webhook processed), %d kills: %s s\n' \
        "${#FAILOVER_SAMPLES[@]}" "$(printf '%s\n' "${FAILOVER_SAMPLES[@]}" | sort -n | awk '{ v[NR] = $1 } END {
            printf "median %.2f, p90 %.2f, max %.2f", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR] }')"
}

print_replica_targets() {
    local pg1="postgres-1" pg3="postgres-3" worst
    printf '  %-40s %s (%s)\n' "PostgreSQL >= 2,000 webhooks/s at 16c" \
        "$(verdict "$(awk -v r="${RESULT[$pg1.rps]}" 'BEGIN { print (r >= 2000) }')")" "${RESULT[$pg1.rps]}"
    printf '  %-40s %s (%s, %s ms)\n' "PostgreSQL p99 < 20 ms at $RATE/s" \
        "$(verdict "$(awk -v a="${RESULT[$pg1.rate.p99]}" -v b="${RESULT[$pg3.rate.p99]}" 'BEGIN { print (a < 20 && b < 20) }')")" \
        "${RESULT[$pg1.rate.p99]}" "${RESULT[$pg3.rate.p99]}"
    worst="$(printf '%s\n' "${FAILOVER_SAMPLES[@]}" | sort -n | tail -n 1)"
    printf '  %-40s %s (%s s, the slowest of %d)\n' "failover < 10 s" \
        "$(verdict "$(awk -v t="$worst" 'BEGIN { print (t < 10) }')")" "$worst" "${#FAILOVER_SAMPLES[@]}"
}
