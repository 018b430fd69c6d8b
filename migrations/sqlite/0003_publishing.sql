-- Publishing: the notices operators published, and the outbox of deliveries, one row per
-- (notice, channel, recipient), written in the same transaction as the publication.

CREATE TABLE published_notices (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    -- One publication per draft: two concurrent publishes give exactly one.
    draft_id INTEGER NOT NULL UNIQUE REFERENCES drafts (id),
    draft_version INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'update', 'resolved')),
    level INTEGER NOT NULL CHECK (level IN (1, 2, 3)),
    -- Who decided (levels 2 and 3) and in what role.
    decided_by TEXT,
    decided_role TEXT,
    -- The operator who published.
    published_by TEXT NOT NULL,
    -- JSON: channel names, and the RenderedNotice exactly as published.
    channels TEXT NOT NULL,
    rendered TEXT NOT NULL,
    published_at TEXT NOT NULL
);

CREATE INDEX published_notices_by_incident ON published_notices (incident_id, id);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    notice_id INTEGER NOT NULL REFERENCES published_notices (id),
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- Stays the same across retries: receivers deduplicate on it; email uses it in the
    -- Message-ID.
    delivery_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    -- Set while a worker holds the row; a row whose lease ran out is claimable again.
    lease_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (notice_id, channel, recipient)
);

CREATE INDEX outbox_due ON outbox (channel, state, next_attempt_at);
