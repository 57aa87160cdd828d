-- +goose Up
-- Retention by end status and legal holds: a held saga is never deleted by
-- cleanup; cleanup deletes one end status at a time, oldest first, along an
-- index led by the status.
ALTER TABLE sagas ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1));
CREATE INDEX sagas_finished_status_completed_at_idx ON sagas (status, completed_at)
    WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut');

-- +goose Down
DROP INDEX sagas_finished_status_completed_at_idx;
ALTER TABLE sagas DROP COLUMN legal_hold;
