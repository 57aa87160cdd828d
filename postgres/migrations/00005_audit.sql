-- +goose Up
-- The audit trail: who asked (actor), a hash chain per saga, and
-- tombstones of deleted sagas.
-- Every column added is nullable or has a constant default, so the change
-- rewrites no table. Events written before it carry no hash; audit verify
-- reports them as written before the chain.

-- The head of the saga's chain (the hash of its latest event), the
-- attribution of its pending operator request (the seq of its
-- OperatorRequested event, and who asked).
ALTER TABLE sagas
    ADD COLUMN last_hash   BYTEA,
    ADD COLUMN control_seq BIGINT,
    ADD COLUMN control_by  TEXT;

-- Who asked (the name of the API token of an operator request or a
-- submit), and the event's hash: SHA-256 (or HMAC-SHA-256) over its
-- content and the hash of the event before it (saga.Chain).
ALTER TABLE saga_events
    ADD COLUMN actor TEXT,
    ADD COLUMN hash  BYTEA;

-- One row per deleted saga: how it ended, the head of its chain, when it
-- was deleted, under which rule and at whose request (none for the
-- retention job). It has no foreign key: the saga is gone.
CREATE TABLE saga_deletions (
    saga_id      UUID PRIMARY KEY,
    name         VARCHAR(255) NOT NULL,
    final_status saga_status NOT NULL,
    event_seq    BIGINT NOT NULL,
    last_hash    BYTEA,
    completed_at TIMESTAMPTZ,
    deleted_at   TIMESTAMPTZ NOT NULL,
    rule         TEXT NOT NULL,
    actor        TEXT,
    reason       TEXT,
    client_addr  TEXT
);

CREATE INDEX saga_deletions_deleted_at_idx ON saga_deletions (deleted_at);

-- +goose Down
DROP TABLE saga_deletions;
ALTER TABLE saga_events DROP COLUMN hash, DROP COLUMN actor;
ALTER TABLE sagas DROP COLUMN control_by, DROP COLUMN control_seq, DROP COLUMN last_hash;
