-- The tables of package barrier, in the participant's own database.
-- CreateTables runs this; it can also be applied by hand or by the
-- participant's migrations. Both statements are idempotent.

-- One row per (saga, step, op) that reached the participant:
--   op 'action':       outcome 'done' (applied, answer kept), 'refused' (the
--                      participant refused it: nothing applied, answer kept)
--                      or 'blocked' (its compensation came first: the action
--                      must never apply);
--   op 'compensation': outcome 'done' (applied, answer kept) or 'skipped'
--                      (a no-op: the action never ran or was refused).
CREATE TABLE IF NOT EXISTS saga_barrier (
    saga_id      TEXT        NOT NULL,
    step         TEXT        NOT NULL,
    op           TEXT        NOT NULL CHECK (op IN ('action', 'compensation')),
    outcome      TEXT        NOT NULL CHECK (outcome IN ('done', 'refused', 'blocked', 'skipped')),
    status       INTEGER     NOT NULL,
    content_type TEXT        NOT NULL DEFAULT '',
    body         BYTEA       NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, step, op)
);

-- The highest X-Saga-Attempt-Epoch seen per step: a call with a lower one
-- comes from an instance that lost the saga (a stale owner) and is refused.
CREATE TABLE IF NOT EXISTS saga_barrier_epoch (
    saga_id TEXT   NOT NULL,
    step    TEXT   NOT NULL,
    epoch   BIGINT NOT NULL,
    PRIMARY KEY (saga_id, step)
);
