-- Planned maintenance: incidents of kind 'maintenance' (several may be open at once, so
-- the one-open-per-kind index leaves them out), each with its window, and the alerts
-- that arrived inside a window instead of opening an incident.
--
-- SQLite cannot change a CHECK constraint in place, so the incidents table is rebuilt.
-- sqlx runs every SQLite migration inside a transaction (it ignores `-- no-transaction`
-- there), where `PRAGMA foreign_keys = OFF` does nothing; so the rebuild keeps foreign
-- keys on and defers them to the commit instead: the rows are copied aside, the table is
-- dropped (its implicit delete counts each row that points at an incident as a pending
-- violation) and created again under its own name (so the other tables' references,
-- which name it, point at the new one), and copying the rows back gives every such row
-- its incident again, which settles the count before the commit checks it.

PRAGMA defer_foreign_keys = ON;

CREATE TABLE incidents_previous AS SELECT * FROM incidents;

DROP TABLE incidents;

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    -- outage: SAMSA is down for someone; monitoring: the alert chain itself is broken
    -- (operators only, never public); drill: an exercise; maintenance: a planned window.
    kind TEXT NOT NULL CHECK (kind IN ('outage', 'monitoring', 'drill', 'maintenance')),
    phase TEXT NOT NULL CHECK (phase IN ('open', 'resolved')),
    started_at TEXT NOT NULL,
    resolved_at TEXT,
    n_reopened INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL,
    classification TEXT NOT NULL,
    published TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

INSERT INTO incidents (id, kind, phase, started_at, resolved_at, n_reopened, summary,
    classification, published, created_at, updated_at)
SELECT id, kind, phase, started_at, resolved_at, n_reopened, summary, classification,
    published, created_at, updated_at
FROM incidents_previous;

DROP TABLE incidents_previous;

-- One open incident per kind at a time, but any number of maintenance windows.
CREATE UNIQUE INDEX incidents_one_open ON incidents (kind)
    WHERE phase = 'open' AND kind <> 'maintenance';

CREATE TABLE maintenance_windows (
    incident_id INTEGER PRIMARY KEY REFERENCES incidents (id),
    -- JSON: the operator's WindowPlan (title, scope, times, texts, level, auto_series);
    -- the times again below, for the queries.
    plan TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('planned', 'announced', 'running', 'overran',
        'completed', 'cancelled')),
    -- Raised by every change people were told of (iCalendar SEQUENCE).
    sequence INTEGER NOT NULL DEFAULT 0,
    -- JSON arrays: the steps of the series made, the Alertmanager silences to expire.
    steps_done TEXT NOT NULL DEFAULT '[]',
    silence_ids TEXT NOT NULL DEFAULT '[]',
    -- JSON SeriesApproval, or NULL: what the automatic notices reuse.
    approval TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    announced_at TEXT,
    ended_at TEXT,
    updated_at TEXT NOT NULL
);

CREATE INDEX maintenance_windows_by_state ON maintenance_windows (state, starts_at);

-- The latest state of each alert that arrived inside a window's scope and times.
CREATE TABLE maintenance_alerts (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint, starts_at)
);

