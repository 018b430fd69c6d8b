-- Receipts move to a file of their own (migrations/sqlite-receipts/), so that a webhook's
-- commit and the incident worker's commit no longer take turns on one write lock. SQLite
-- has no foreign keys between files: alerts and receipts_processed are rebuilt without
-- them. The relay copies the rows of webhook_receipts into the receipts file and drops
-- the table here after this migration (src/storage/sqlite/mod.rs, move_receipts).

CREATE TABLE alerts_rebuilt (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    ends_at TEXT,
    generator_url TEXT NOT NULL,
    first_receipt_id INTEGER NOT NULL,
    last_receipt_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);

INSERT INTO alerts_rebuilt
    SELECT fingerprint, starts_at, status, labels, annotations, ends_at, generator_url,
        first_receipt_id, last_receipt_id, updated_at
    FROM alerts;

DROP TABLE alerts;

ALTER TABLE alerts_rebuilt RENAME TO alerts;

CREATE TABLE receipts_processed_rebuilt (
    receipt_id INTEGER PRIMARY KEY,
    processed_at TEXT NOT NULL
);

INSERT INTO receipts_processed_rebuilt SELECT receipt_id, processed_at FROM receipts_processed;

DROP TABLE receipts_processed;

ALTER TABLE receipts_processed_rebuilt RENAME TO receipts_processed;
