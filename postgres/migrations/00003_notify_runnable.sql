-- +goose Up
-- Work that another instance may take announces itself on the channel
-- tracseq_runnable, in the transaction that makes it so: a saga without an
-- owner that has a next-run time (created unleased, released on shutdown,
-- parked until a retry is due, given up, or asked to act by an operator).
-- The payload is the number of milliseconds until the saga is due (0: now),
-- so that a listener can wake when a retry comes due without polling.
-- PostgreSQL folds identical notifications of one transaction into one, so
-- a group commit of many such writes sends a few.

-- +goose StatementBegin
CREATE FUNCTION tracseq_notify_runnable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracseq_runnable',
        greatest(0, ceil(extract(epoch FROM NEW.next_run_at - now()) * 1000))::bigint::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER sagas_notify_runnable_insert AFTER INSERT ON sagas
    FOR EACH ROW WHEN (NEW.owner_id IS NULL AND NEW.next_run_at IS NOT NULL)
    EXECUTE FUNCTION tracseq_notify_runnable();

CREATE TRIGGER sagas_notify_runnable_update AFTER UPDATE OF owner_id, next_run_at ON sagas
    FOR EACH ROW WHEN (NEW.owner_id IS NULL AND NEW.next_run_at IS NOT NULL
        AND (OLD.owner_id IS NOT NULL OR OLD.next_run_at IS DISTINCT FROM NEW.next_run_at))
    EXECUTE FUNCTION tracseq_notify_runnable();

-- +goose Down
DROP TRIGGER sagas_notify_runnable_update ON sagas;
DROP TRIGGER sagas_notify_runnable_insert ON sagas;
DROP FUNCTION tracseq_notify_runnable();
