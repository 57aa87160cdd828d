-- +goose NO TRANSACTION
-- +goose Up
-- The unique index on idempotency_key took an entry for every saga, NULL
-- keys included: two per saga without a key (its insert and the update
-- that ends it, which changes an indexed column and so is not HOT). Only
-- sagas with a key need it: the lookup by key (idempotency_key = $1)
-- implies the key is not NULL, and the create's ON CONFLICT DO NOTHING
-- takes any unique index. The new index keeps the old name, which a
-- unique violation reports (errors.go). Built without blocking writes.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS sagas_idempotency_key_set ON sagas (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE sagas DROP CONSTRAINT IF EXISTS sagas_idempotency_key_key;
ALTER INDEX IF EXISTS sagas_idempotency_key_set RENAME TO sagas_idempotency_key_key;

-- +goose Down
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS sagas_idempotency_key_all ON sagas (idempotency_key);
DROP INDEX CONCURRENTLY IF EXISTS sagas_idempotency_key_key;
ALTER TABLE sagas ADD CONSTRAINT sagas_idempotency_key_key UNIQUE USING INDEX sagas_idempotency_key_all;
