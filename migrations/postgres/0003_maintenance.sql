-- Planned maintenance (SQLite's 0012): incidents of kind 'maintenance' (several may be
-- open at once), each with its window, and the alerts that arrived inside a window
-- instead of opening an incident.

ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('outage', 'monitoring', 'drill', 'maintenance'));

DROP INDEX incidents_one_open;
CREATE UNIQUE INDEX incidents_one_open ON incidents (kind)
    WHERE phase = 'open' AND kind <> 'maintenance';

CREATE TABLE maintenance_windows (
    incident_id BIGINT PRIMARY KEY REFERENCES incidents (id),
    -- JSON: the operator's WindowPlan; the times again below, for the queries.
    plan TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('planned', 'announced', 'running', 'overran',
        'completed', 'cancelled')),
    sequence BIGINT NOT NULL DEFAULT 0,
    steps_done TEXT NOT NULL DEFAULT '[]',
    silence_ids TEXT NOT NULL DEFAULT '[]',
    approval TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    announced_at TEXT,
    ended_at TEXT,
    updated_at TEXT NOT NULL
);

CREATE INDEX maintenance_windows_by_state ON maintenance_windows (state, starts_at);

CREATE TABLE maintenance_alerts (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint, starts_at)
);
