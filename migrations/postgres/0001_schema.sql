-- The PostgreSQL schema: the same tables as migrations/sqlite/0001 to 0010 taken together,
-- with the differences PostgreSQL needs. Never edited once released; later changes are
-- new files.
--
-- Times are text in the one fixed-width UTC form the SQLite schema uses
-- (YYYY-MM-DDTHH:MM:SS.fffffffffZ), not timestamptz: timestamptz keeps microseconds, and
-- an alert's startsAt (part of its key) has nanoseconds. Text order is time order.
-- relay_time_text() writes the database's own clock in that form, for leases.
-- JSON is stored as text exactly as serialized, like on SQLite. Every integer is bigint.

CREATE FUNCTION relay_time_text(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '000Z' $$;

-- Ingest ------------------------------------------------------------------------------

CREATE TABLE webhook_receipts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Same for every resend of one notification (see Notification::dedupe_key).
    dedupe_key TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    receiver TEXT NOT NULL,
    external_url TEXT NOT NULL,
    n_alerts BIGINT NOT NULL,
    truncated_alerts BIGINT NOT NULL,
    -- The body exactly as received, for audit.
    payload TEXT NOT NULL
);

-- The incident worker's backlog: a receipt's id is inserted with the receipt and deleted
-- in the transaction that processes it. On SQLite the backlog is every id above the
-- highest processed one, since one writer commits ids in order; here several replicas
-- insert at once, and a transaction that drew a lower id may commit after one that drew
-- a higher id, so the backlog is kept explicitly (a small table, never a scan of history).
CREATE TABLE receipts_backlog (
    receipt_id BIGINT PRIMARY KEY REFERENCES webhook_receipts (id)
);

-- Which receipts the incident worker has taken into account, and when.
CREATE TABLE receipts_processed (
    receipt_id BIGINT PRIMARY KEY REFERENCES webhook_receipts (id),
    processed_at TEXT NOT NULL
);

CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT,
    generator_url TEXT NOT NULL,
    first_receipt_id BIGINT NOT NULL REFERENCES webhook_receipts (id),
    last_receipt_id BIGINT NOT NULL REFERENCES webhook_receipts (id),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

-- One row that the readiness check rewrites to prove the database takes writes.
CREATE TABLE relay_heartbeat (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);

INSERT INTO relay_heartbeat (id, checked_at) VALUES (1, '');

-- Incidents ---------------------------------------------------------------------------

CREATE TABLE incidents (
    -- No sequence: the incident engine numbers a new outage itself (the highest id + 1,
    -- read in the same serialised write transaction), as on SQLite.
    id BIGINT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('outage', 'monitoring', 'drill')),
    phase TEXT NOT NULL CHECK (phase IN ('open', 'resolved')),
    started_at TEXT NOT NULL,
    resolved_at TEXT,
    n_reopened BIGINT NOT NULL DEFAULT 0,
    summary TEXT NOT NULL,
    classification TEXT NOT NULL,
    published TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One open incident per kind at a time.
CREATE UNIQUE INDEX incidents_one_open ON incidents (kind) WHERE phase = 'open';

CREATE TABLE incident_alerts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    incident_id BIGINT REFERENCES incidents (id),
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id);

-- The incident's log: append-only.
CREATE TABLE incident_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

CREATE FUNCTION incident_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_events is append-only';
END
$$;

CREATE TRIGGER incident_events_no_update BEFORE UPDATE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();

CREATE TRIGGER incident_events_no_delete BEFORE DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();

CREATE TABLE drafts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'update', 'resolved')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'published', 'withdrawn', 'discarded')),
    state_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A draft not yet published is revised in place, never duplicated.
CREATE UNIQUE INDEX drafts_one_pending ON drafts (incident_id) WHERE state = 'pending';

CREATE TABLE draft_versions (
    draft_id BIGINT NOT NULL REFERENCES drafts (id),
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    fields TEXT NOT NULL,
    input TEXT NOT NULL,
    rendered TEXT NOT NULL,
    PRIMARY KEY (draft_id, version)
);

-- Publishing --------------------------------------------------------------------------

CREATE TABLE published_notices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    -- One publication per draft: two concurrent publishes give exactly one.
    draft_id BIGINT NOT NULL UNIQUE REFERENCES drafts (id),
    draft_version BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'update', 'resolved')),
    level BIGINT NOT NULL CHECK (level IN (1, 2, 3)),
    decided_by TEXT,
    decided_role TEXT,
    published_by TEXT NOT NULL,
    channels TEXT NOT NULL,
    rendered TEXT NOT NULL,
    published_at TEXT NOT NULL
);

CREATE INDEX published_notices_by_incident ON published_notices (incident_id, id);

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id BIGINT NOT NULL REFERENCES published_notices (id),
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- Stays the same across retries: receivers deduplicate on it.
    delivery_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    -- Set while a worker holds the row; a row whose lease ran out is claimable again.
    lease_until TEXT,
    -- Set by a claim that finds the row still leased (its sender died or stalled).
    reclaimed BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (notice_id, channel, recipient)
);

CREATE INDEX outbox_due ON outbox (channel, state, next_attempt_at);

-- Operators ---------------------------------------------------------------------------

CREATE TABLE operator_mail (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    incident_id BIGINT REFERENCES incidents (id),
    draft_id BIGINT REFERENCES drafts (id),
    draft_version BIGINT,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until TEXT,
    reclaimed BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);

CREATE INDEX operator_mail_due ON operator_mail (state, next_attempt_at);
CREATE INDEX operator_mail_by_draft ON operator_mail (draft_id, purpose, created_at);

-- `samsa-relay revoke-links`: one row at most.
CREATE TABLE link_revocation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    links_valid_from TEXT NOT NULL
);

-- Follow-up ---------------------------------------------------------------------------

CREATE TABLE feedback (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    received_at TEXT NOT NULL,
    name TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    organisation TEXT NOT NULL CHECK (char_length(organisation) BETWEEN 1 AND 200),
    message TEXT NOT NULL CHECK (char_length(message) BETWEEN 1 AND 5000)
);

CREATE INDEX feedback_by_incident ON feedback (incident_id, id);

CREATE TABLE lessons (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('evaluation', 'lesson')),
    audience TEXT CHECK (audience IN ('organisations', 'suppliers', 'service_management')),
    text TEXT NOT NULL CHECK (char_length(text) BETWEEN 1 AND 5000),
    CHECK ((kind = 'lesson' AND audience IS NOT NULL) OR (kind = 'evaluation' AND audience IS NULL))
);

CREATE INDEX lessons_by_incident ON lessons (incident_id, id);

-- Installation ------------------------------------------------------------------------

-- One random id (32 hex digits) per installation, created with the schema.
CREATE TABLE installation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    installation_id TEXT NOT NULL
);

INSERT INTO installation (id, installation_id)
    VALUES (1, replace(gen_random_uuid()::text, '-', ''));

-- Cluster -----------------------------------------------------------------------------

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE heartbeats (
    name TEXT PRIMARY KEY,
    last_seen TEXT NOT NULL
);

CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at TEXT NOT NULL
);
