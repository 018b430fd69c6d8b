-- Follow-up: feedback from the public feedback page, and the evaluation notes and lessons
-- learned ("erfarenheter") operators write after an incident. Entries operators write in
-- the log by hand are not here: they are rows of incident_events with event = 'note' and
-- the operator's name as source.

-- What people sent through /public/feedback/{incident_id}. Plain text exactly as it will be
-- shown (control characters removed, line breaks normalised, lengths capped), never HTML:
-- every page, email and report escapes it for its own format. No address of the sender is
-- stored.
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    received_at TEXT NOT NULL,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    organisation TEXT NOT NULL CHECK (length(organisation) BETWEEN 1 AND 200),
    message TEXT NOT NULL CHECK (length(message) BETWEEN 1 AND 5000)
);

CREATE INDEX feedback_by_incident ON feedback (incident_id, id);

-- Written on a resolved incident. An evaluation note is for the follow-up meeting; a
-- lesson is addressed to the organisations, the suppliers or the service management.
CREATE TABLE lessons (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    created_at TEXT NOT NULL,
    -- The operator's name, as in incident_events.source.
    created_by TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('evaluation', 'lesson')),
    audience TEXT CHECK (audience IN ('organisations', 'suppliers', 'service_management')),
    text TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 5000),
    CHECK ((kind = 'lesson' AND audience IS NOT NULL) OR (kind = 'evaluation' AND audience IS NULL))
);

CREATE INDEX lessons_by_incident ON lessons (incident_id, id);

-- The incident's log is append-only: the database refuses to change or remove an entry.
CREATE TRIGGER incident_events_no_update BEFORE UPDATE ON incident_events
BEGIN
    SELECT RAISE(ABORT, 'incident_events is append-only');
END;

CREATE TRIGGER incident_events_no_delete BEFORE DELETE ON incident_events
BEGIN
    SELECT RAISE(ABORT, 'incident_events is append-only');
END;
