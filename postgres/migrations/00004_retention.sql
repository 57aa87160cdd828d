-- +goose NO TRANSACTION
-- +goose Up
-- Retention by end status and legal holds.
--
-- legal_hold keeps a saga from cleanup whatever its age. Adding a column
-- with a constant default rewrites nothing (PostgreSQL 11+).
ALTER TABLE sagas ADD COLUMN IF NOT EXISTS legal_hold BOOLEAN NOT NULL DEFAULT false;

-- Cleanup deletes one end status at a time (each has its own retention):
-- an index led by the status finds the oldest of that status first, where
-- one on completed_at alone would make every batch of a long-kept status
-- walk past the sagas of the others. It serves the "ended in window"
-- statistic too (one index descent per status). Built without blocking
-- writes, so that the migration runs on a populated, busy database.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sagas_finished_status_completed_at_idx ON sagas (status, completed_at)
    WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut');
DROP INDEX CONCURRENTLY IF EXISTS sagas_finished_completed_at_idx;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS sagas_finished_completed_at_idx ON sagas (completed_at)
    WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut');
DROP INDEX CONCURRENTLY IF EXISTS sagas_finished_status_completed_at_idx;
ALTER TABLE sagas DROP COLUMN IF EXISTS legal_hold;
