-- One random id per installation, created once when the database is created (or migrated)
-- and never changed. It is mixed into every delivery id (so into every Message-ID and
-- webhook Idempotency-Key) and into operator mail Message-IDs, so that a new installation
-- (or a deleted var/) never reuses the ids of an earlier one.

CREATE TABLE installation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    installation_id TEXT NOT NULL
);

INSERT INTO installation (id, installation_id) VALUES (1, lower(hex(randomblob(16))));
