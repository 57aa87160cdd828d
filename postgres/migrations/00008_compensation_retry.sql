-- +goose Up
-- The attempts a compensation had made when an operator last retried its
-- saga: attempts count across retries, the retry budget from the last one.
-- A constant default rewrites nothing (PostgreSQL 11+).
ALTER TABLE saga_compensations ADD COLUMN IF NOT EXISTS attempts_before_retry INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE saga_compensations DROP COLUMN IF EXISTS attempts_before_retry;
