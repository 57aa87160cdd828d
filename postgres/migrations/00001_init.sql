-- +goose Up
-- The saga store: one row per saga, its steps, compensations, checkpoints
-- and audit events. Enum values are spelled exactly as the Go constants.

CREATE TYPE saga_status AS ENUM (
    'Created', 'Executing', 'Compensating',
    'Completed', 'Compensated', 'Failed',
    'Paused', 'Cancelled', 'TimedOut'
);

CREATE TYPE step_status AS ENUM (
    'Pending', 'Executing', 'Completed',
    'Failed', 'Skipped', 'Retrying'
);

CREATE TYPE compensation_status AS ENUM (
    'Pending', 'Executing', 'Completed', 'Failed', 'Retrying'
);

-- sagas is updated on every transition; the fill factor leaves room on each
-- page for HOT updates (those that change no indexed column).
CREATE TABLE sagas (
    id                  UUID PRIMARY KEY,
    name                VARCHAR(255) NOT NULL,
    status              saga_status NOT NULL,
    transaction_id      UUID NOT NULL,
    user_id             UUID,
    completed_steps     INTEGER NOT NULL DEFAULT 0,
    total_steps         INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    transaction_context JSONB NOT NULL DEFAULT '{}',
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    error               TEXT,
    definition          JSONB NOT NULL,
    idempotency_key     VARCHAR(255) UNIQUE,
    -- The end status a compensating saga takes once compensation is done.
    compensate_to       saga_status,
    -- An operator's request not yet carried out.
    control_request     TEXT CHECK (control_request IN ('pause', 'resume', 'cancel', 'retry')),
    deadline            TIMESTAMPTZ,
    -- The lease: which instance runs the saga, until when, and the fencing
    -- epoch incremented by every claim.
    owner_id            TEXT,
    lease_expires_at    TIMESTAMPTZ,
    lease_epoch         BIGINT NOT NULL DEFAULT 0,
    -- When the saga is next runnable by a claim; NULL: never.
    next_run_at         TIMESTAMPTZ,
    -- The seq of the saga's latest event.
    event_seq           BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 85);

-- Indexes. Every index on sagas costs on every write that changes its
-- columns, so only those that serve a query are kept:
-- * listing newest first, alone or after a cursor or created_after, and the
--   "started in window" statistic;
CREATE INDEX sagas_created_at_id_idx ON sagas (created_at DESC, id DESC);
-- * listing by status (it also serves counting by status, so a separate
--   index on status alone would be redundant);
CREATE INDEX sagas_status_created_at_id_idx ON sagas (status, created_at DESC, id DESC);
-- * listing by name and by transaction id;
CREATE INDEX sagas_name_created_at_idx ON sagas (name, created_at DESC, id DESC);
CREATE INDEX sagas_transaction_id_idx ON sagas (transaction_id);
-- * the claim of runnable work (WHERE next_run_at <= now() ...);
CREATE INDEX sagas_next_run_at_idx ON sagas (next_run_at) WHERE next_run_at IS NOT NULL;
-- * the cleanup of old finished sagas and the "ended in window" statistic.
CREATE INDEX sagas_finished_completed_at_idx ON sagas (completed_at)
    WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut');
-- No index on updated_at: no query reads by it, and since every transition
-- changes it, indexing it would forbid HOT updates of the saga row.

CREATE TABLE saga_steps (
    id           UUID PRIMARY KEY,
    saga_id      UUID NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_name    VARCHAR(255) NOT NULL,
    step_index   INTEGER NOT NULL,
    status       step_status NOT NULL,
    input_data   JSONB DEFAULT '{}',
    output_data  JSONB DEFAULT '{}',
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    -- The step failed in a way that leaves its effect unknown: compensate it.
    uncertain    BOOLEAN NOT NULL DEFAULT false,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (saga_id, step_index)
) WITH (fillfactor = 85);

CREATE TABLE saga_compensations (
    id           UUID PRIMARY KEY,
    saga_id      UUID NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_index   INTEGER NOT NULL,
    status       compensation_status NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    output_data  JSONB,
    error        TEXT,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (saga_id, step_index),
    -- A compensation undoes a step the saga has.
    FOREIGN KEY (saga_id, step_index) REFERENCES saga_steps (saga_id, step_index) ON DELETE CASCADE
);

CREATE TABLE saga_checkpoints (
    id         UUID PRIMARY KEY,
    saga_id    UUID NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    step_index INTEGER NOT NULL,
    context    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The newest checkpoint of a saga; also serves the cascading delete.
CREATE INDEX saga_checkpoints_saga_id_created_at_idx ON saga_checkpoints (saga_id, created_at DESC, id DESC);

CREATE TABLE saga_events (
    id          UUID PRIMARY KEY,
    saga_id     UUID NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    step_index  INTEGER,
    data        JSONB,
    instance_id TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (saga_id, seq)
);

-- +goose Down
DROP TABLE saga_events;
DROP TABLE saga_checkpoints;
DROP TABLE saga_compensations;
DROP TABLE saga_steps;
DROP TABLE sagas;
DROP TYPE compensation_status;
DROP TYPE step_status;
DROP TYPE saga_status;
