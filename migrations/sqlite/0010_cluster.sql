-- Coordination between replicas (storage/cluster.rs). With SQLite there is one replica; the
-- tables are the same so that the relay's services run one way on every backend.

-- One row per lease ("correlation", "timers"): who holds it and until when.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The latest arrival of each heartbeat (the Watchdog alert), on whichever replica.
CREATE TABLE heartbeats (
    name TEXT PRIMARY KEY,
    last_seen TEXT NOT NULL
);

-- Cluster-wide token buckets for channel rate limits.
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at TEXT NOT NULL
);

-- Set by a claim that finds the row still leased: the attempt before never recorded its
-- result (its replica died or stalled while sending), so the recipient may get it twice.
ALTER TABLE outbox ADD COLUMN reclaimed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operator_mail ADD COLUMN reclaimed INTEGER NOT NULL DEFAULT 0;
