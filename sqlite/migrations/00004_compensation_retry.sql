-- +goose Up
-- The attempts a compensation had made when an operator last retried its
-- saga: attempts count across retries, the retry budget from the last one.
ALTER TABLE saga_compensations ADD COLUMN attempts_before_retry INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE saga_compensations DROP COLUMN attempts_before_retry;
