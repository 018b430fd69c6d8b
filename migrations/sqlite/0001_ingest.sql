-- Ingest: every accepted webhook, and the current state of every alert it carried.
-- Times are UTC text in one fixed-width form (YYYY-MM-DDTHH:MM:SS.fffffffffZ) so that text
-- order is time order. Kept to SQL that PostgreSQL also runs.

CREATE TABLE webhook_receipts (
    id INTEGER PRIMARY KEY,
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
    payload TEXT NOT NULL,
    -- Set when the incident engine has taken this receipt into account.
    processed_at TEXT
);

CREATE INDEX webhook_receipts_unprocessed ON webhook_receipts (id) WHERE processed_at IS NULL;

CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT,
    generator_url TEXT NOT NULL,
    first_receipt_id INTEGER NOT NULL REFERENCES webhook_receipts (id),
    last_receipt_id INTEGER NOT NULL REFERENCES webhook_receipts (id),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE INDEX alerts_by_status ON alerts (status);

-- One row that the readiness check rewrites to prove the database takes writes.
CREATE TABLE relay_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);

INSERT INTO relay_heartbeat (id, checked_at) VALUES (1, '');
