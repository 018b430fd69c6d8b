-- Operators: the emails the relay sends them (review links, escalations, reminders,
-- alarms), through their own outbox so that a crash loses none, each at most once per
-- purpose thanks to its dedupe key.

CREATE TABLE operator_mail (
    id INTEGER PRIMARY KEY,
    -- e.g. review:12:3:anna@example.org, escalate:12:anna@example.org.
    dedupe_key TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    incident_id INTEGER REFERENCES incidents (id),
    draft_id INTEGER REFERENCES drafts (id),
    draft_version INTEGER,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);

CREATE INDEX operator_mail_due ON operator_mail (state, next_attempt_at);
CREATE INDEX operator_mail_by_draft ON operator_mail (draft_id, purpose, created_at);
