-- `samsa-relay revoke-links` invalidates every operator link issued before it ran: the
-- operator pages refuse a link whose issue time is not after links_valid_from. One row at
-- most; no row means no link was ever revoked.

CREATE TABLE link_revocation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    links_valid_from TEXT NOT NULL
);
