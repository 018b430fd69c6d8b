-- The receipts file: every accepted webhook, in a SQLite file of its own beside the
-- relay's database, so that storing a webhook and the incident worker's writes each have
-- a write lock (and an fsync) of their own. Only ingest writes here; the relay's
-- database attaches this file read-only as `receipts`.

-- AUTOINCREMENT: an id is never given twice, even after the receipts file was restored
-- from an older backup (the relay then moves the sequence above the highest receipt its
-- database has processed).
CREATE TABLE webhook_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Same for every resend of one notification (see Notification::dedupe_key).
    dedupe_key TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    receiver TEXT NOT NULL,
    external_url TEXT NOT NULL,
    n_alerts INTEGER NOT NULL,
    truncated_alerts INTEGER NOT NULL,
    -- The body exactly as received, for audit.
    payload TEXT NOT NULL
);

-- One row that the readiness check rewrites to prove this file takes writes.
CREATE TABLE relay_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);

INSERT INTO relay_heartbeat (id, checked_at) VALUES (1, '');
