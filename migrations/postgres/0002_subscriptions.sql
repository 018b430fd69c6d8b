-- Subscribers of the notices (src/subscription.rs, docs/subscriptions.md), as in SQLite's
-- 0011_subscriptions.sql. Only the address, the choices, consent and source.

CREATE TABLE subscribers (
    -- An identity is never reused: an outbox row or a link of a deleted subscriber never
    -- points at someone who subscribes later.
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed', 'suspended')),
    choices TEXT NOT NULL,
    source TEXT NOT NULL,
    nonce TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    consented_at TEXT,
    ended_at TEXT,
    updated_at TEXT NOT NULL,
    permanent_failures BIGINT NOT NULL DEFAULT 0,
    last_failure TEXT
);

CREATE INDEX subscribers_by_state ON subscribers (state, updated_at);

ALTER TABLE outbox ADD COLUMN subscriber_id BIGINT;
CREATE INDEX outbox_by_subscriber ON outbox (subscriber_id) WHERE subscriber_id IS NOT NULL;
