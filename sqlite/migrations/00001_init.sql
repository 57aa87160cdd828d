-- +goose Up
-- The saga store on SQLite: the five tables of the PostgreSQL store, with
-- the same columns. SQLite has no enum, UUID, JSONB or TIMESTAMPTZ types:
-- statuses are TEXT checked against the same values, ids are UUIDs in
-- their text form, JSON is TEXT as the client sent it, and times are TEXT
-- in one fixed-width UTC form, 2006-01-02T15:04:05.000000Z, so that they
-- compare and sort as text in time order and stay readable with the
-- sqlite3 shell. The tables are STRICT: a value of the wrong type is
-- refused rather than stored.

CREATE TABLE sagas (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL CHECK (length(name) <= 255),
    status              TEXT NOT NULL CHECK (status IN (
                            'Created', 'Executing', 'Compensating',
                            'Completed', 'Compensated', 'Failed',
                            'Paused', 'Cancelled', 'TimedOut')),
    transaction_id      TEXT NOT NULL,
    user_id             TEXT,
    completed_steps     INTEGER NOT NULL DEFAULT 0,
    total_steps         INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    transaction_context TEXT NOT NULL DEFAULT '{}',
    updated_at          TEXT NOT NULL,
    started_at          TEXT,
    completed_at        TEXT,
    error               TEXT,
    definition          TEXT NOT NULL,
    idempotency_key     TEXT UNIQUE CHECK (length(idempotency_key) <= 255),
    -- The end status a compensating saga takes once compensation is done.
    compensate_to       TEXT CHECK (compensate_to IN (
                            'Created', 'Executing', 'Compensating',
                            'Completed', 'Compensated', 'Failed',
                            'Paused', 'Cancelled', 'TimedOut')),
    -- An operator's request not yet carried out.
    control_request     TEXT CHECK (control_request IN ('pause', 'resume', 'cancel', 'retry')),
    deadline            TEXT,
    -- The lease: which instance runs the saga, until when, and the fencing
    -- epoch incremented by every claim.
    owner_id            TEXT,
    lease_expires_at    TEXT,
    lease_epoch         INTEGER NOT NULL DEFAULT 0,
    -- When the saga is next runnable by a claim; NULL: never.
    next_run_at         TEXT,
    -- The seq of the saga's latest event.
    event_seq           INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The indexes of the PostgreSQL store, each serving a query:
-- * listing newest first, alone or after a cursor or created_after, and the
--   "started in window" statistic;
CREATE INDEX sagas_created_at_id_idx ON sagas (created_at DESC, id DESC);
-- * listing by status, and counting by status;
CREATE INDEX sagas_status_created_at_id_idx ON sagas (status, created_at DESC, id DESC);
-- * listing by name and by transaction id;
CREATE INDEX sagas_name_created_at_idx ON sagas (name, created_at DESC, id DESC);
CREATE INDEX sagas_transaction_id_idx ON sagas (transaction_id);
-- * the claim of runnable work (WHERE next_run_at <= now ...);
CREATE INDEX sagas_next_run_at_idx ON sagas (next_run_at) WHERE next_run_at IS NOT NULL;
-- * the cleanup of old finished sagas and the "ended in window" statistic.
CREATE INDEX sagas_finished_completed_at_idx ON sagas (completed_at)
    WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut');

CREATE TABLE saga_steps (
    id           TEXT PRIMARY KEY NOT NULL,
    saga_id      TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_name    TEXT NOT NULL CHECK (length(step_name) <= 255),
    step_index   INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN (
                     'Pending', 'Executing', 'Completed',
                     'Failed', 'Skipped', 'Retrying')),
    input_data   TEXT DEFAULT '{}',
    output_data  TEXT DEFAULT '{}',
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    -- The step failed in a way that leaves its effect unknown: compensate it.
    uncertain    INTEGER NOT NULL DEFAULT 0 CHECK (uncertain IN (0, 1)),
    started_at   TEXT,
    completed_at TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (saga_id, step_index)
) STRICT;

CREATE TABLE saga_compensations (
    id           TEXT PRIMARY KEY NOT NULL,
    saga_id      TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_index   INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN (
                     'Pending', 'Executing', 'Completed', 'Failed', 'Retrying')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    output_data  TEXT,
    error        TEXT,
    started_at   TEXT,
    completed_at TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (saga_id, step_index),
    -- A compensation undoes a step the saga has.
    FOREIGN KEY (saga_id, step_index) REFERENCES saga_steps (saga_id, step_index) ON DELETE CASCADE
) STRICT;

CREATE TABLE saga_checkpoints (
    id         TEXT PRIMARY KEY NOT NULL,
    saga_id    TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_index INTEGER NOT NULL,
    context    TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

-- The newest checkpoint of a saga; also serves the cascading delete.
CREATE INDEX saga_checkpoints_saga_id_created_at_idx ON saga_checkpoints (saga_id, created_at DESC, id DESC);

CREATE TABLE saga_events (
    id          TEXT PRIMARY KEY NOT NULL,
    saga_id     TEXT NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    step_index  INTEGER,
    data        TEXT,
    instance_id TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (saga_id, seq)
) STRICT;

-- Bookkeeping, not saga data: a row is written when the sagas of this file
-- were moved to PostgreSQL (tracseq-tx migrate --from ... --to ...). The
-- store then refuses to serve the file, so that no saga runs in two places.
CREATE TABLE store_moves (
    target   TEXT NOT NULL,
    moved_at TEXT NOT NULL,
    sagas    INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE store_moves;
DROP TABLE saga_events;
DROP TABLE saga_checkpoints;
DROP TABLE saga_compensations;
DROP TABLE saga_steps;
DROP TABLE sagas;
