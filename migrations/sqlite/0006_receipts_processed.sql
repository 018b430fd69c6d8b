-- Which receipts the incident worker has taken into account, kept apart from the receipts
-- themselves: marking a receipt processed no longer rewrites its row and payload, and no
-- partial index has to follow it. The worker takes receipts in id order, ids only grow
-- (one writer, receipts are never deleted), so every receipt up to the highest id here is
-- processed and the backlog is every receipt above it.

CREATE TABLE receipts_processed (
    receipt_id INTEGER PRIMARY KEY REFERENCES webhook_receipts (id),
    processed_at TEXT NOT NULL
);

INSERT INTO receipts_processed (receipt_id, processed_at)
    SELECT id, processed_at FROM webhook_receipts WHERE processed_at IS NOT NULL;

DROP INDEX webhook_receipts_unprocessed;

ALTER TABLE webhook_receipts DROP COLUMN processed_at;
