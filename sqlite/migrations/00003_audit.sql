-- +goose Up
-- The audit trail, as in the PostgreSQL store: who asked (actor), a hash
-- chain per saga, and tombstones of deleted sagas. Events written before
-- carry no hash.

-- The head of the saga's chain (the hash of its latest event), and the
-- attribution of its pending operator request (the seq of its
-- OperatorRequested event, and who asked).
ALTER TABLE sagas ADD COLUMN last_hash BLOB;
ALTER TABLE sagas ADD COLUMN control_seq INTEGER;
ALTER TABLE sagas ADD COLUMN control_by TEXT;

-- Who asked, and the event's hash (saga.Chain).
ALTER TABLE saga_events ADD COLUMN actor TEXT;
ALTER TABLE saga_events ADD COLUMN hash BLOB;

-- One row per deleted saga: how it ended, the head of its chain, when it
-- was deleted, under which rule and at whose request.
CREATE TABLE saga_deletions (
    saga_id      TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    final_status TEXT NOT NULL CHECK (final_status IN (
                     'Created', 'Executing', 'Compensating',
                     'Completed', 'Compensated', 'Failed',
                     'Paused', 'Cancelled', 'TimedOut')),
    event_seq    INTEGER NOT NULL,
    last_hash    BLOB,
    completed_at TEXT,
    deleted_at   TEXT NOT NULL,
    rule         TEXT NOT NULL,
    actor        TEXT,
    reason       TEXT,
    client_addr  TEXT
) STRICT;

CREATE INDEX saga_deletions_deleted_at_idx ON saga_deletions (deleted_at);

-- +goose Down
DROP TABLE saga_deletions;
ALTER TABLE saga_events DROP COLUMN hash;
ALTER TABLE saga_events DROP COLUMN actor;
ALTER TABLE sagas DROP COLUMN control_by;
ALTER TABLE sagas DROP COLUMN control_seq;
ALTER TABLE sagas DROP COLUMN last_hash;
