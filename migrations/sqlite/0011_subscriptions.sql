-- Subscribers of the notices (src/subscription.rs, docs/subscriptions.md). Only what the
-- subscription needs: the address, the choices, when consent was given and how the
-- subscription came about. No name, no organisation, no IP address.

CREATE TABLE subscribers (
    -- AUTOINCREMENT: an id is never reused, so that an outbox row or a link of a deleted
    -- subscriber never points at someone who subscribes later.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Lower case; one subscription per address.
    address TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed', 'suspended')),
    -- JSON: subscription::Choices.
    choices TEXT NOT NULL,
    -- "self-service", or "import by NAME".
    source TEXT NOT NULL,
    -- In every link of the subscription; a new one invalidates the earlier links.
    nonce TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    -- When the subscriber confirmed (or the import that stands for their consent).
    consented_at TEXT,
    -- When it was unsubscribed or suspended: the purge counts from here.
    ended_at TEXT,
    updated_at TEXT NOT NULL,
    -- Permanent delivery failures (SMTP 5xx) in a row; suspended at the configured count.
    permanent_failures INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT
);

CREATE INDEX subscribers_by_state ON subscribers (state, updated_at);

-- The subscriber an outbox row goes to (its recipient is "subscriber:ID", never the
-- address): for cancelling their pending rows and finding who heard of an incident.
ALTER TABLE outbox ADD COLUMN subscriber_id INTEGER;
CREATE INDEX outbox_by_subscriber ON outbox (subscriber_id) WHERE subscriber_id IS NOT NULL;
