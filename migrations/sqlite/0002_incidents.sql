-- Incidents, the alerts that belong to them, their log, and the notice drafts.

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    -- outage: SAMSA is down for someone; monitoring: the alert chain itself is broken
    -- (operators only, never public).
    kind TEXT NOT NULL CHECK (kind IN ('outage', 'monitoring', 'drill')),
    phase TEXT NOT NULL CHECK (phase IN ('open', 'resolved')),
    started_at TEXT NOT NULL,
    resolved_at TEXT,
    n_reopened INTEGER NOT NULL DEFAULT 0,
    -- JSON: ScopeSummary and Classification as last computed from the firing alerts.
    summary TEXT NOT NULL,
    classification TEXT NOT NULL,
    -- JSON Published, or NULL while nothing was published.
    published TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One open incident per kind at a time.
CREATE UNIQUE INDEX incidents_one_open ON incidents (kind) WHERE phase = 'open';

-- Each alert (fingerprint, startsAt) belongs to at most one incident. incident_id is NULL
-- for an alert first seen resolved: final, it never opens an incident.
CREATE TABLE incident_alerts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    incident_id INTEGER REFERENCES incidents (id),
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id);

-- The incident's log: append-only.
CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at TEXT NOT NULL,
    -- Who or what caused it: alertmanager, relay, or an operator's name.
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

CREATE TABLE drafts (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'update', 'resolved')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'published', 'withdrawn', 'discarded')),
    state_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A draft not yet published is revised in place, never duplicated.
CREATE UNIQUE INDEX drafts_one_pending ON drafts (incident_id) WHERE state = 'pending';

CREATE TABLE draft_versions (
    draft_id INTEGER NOT NULL REFERENCES drafts (id),
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    -- JSON: the operator's fields (expected resolution, next update, added information).
    fields TEXT NOT NULL,
    -- JSON: the NoticeInput rendered and the RenderedNotice for every channel.
    input TEXT NOT NULL,
    rendered TEXT NOT NULL,
    PRIMARY KEY (draft_id, version)
);
