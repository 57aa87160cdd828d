-- +goose Up
-- The foreign keys from a saga's rows to sagas cost a check per row
-- written: a query of sagas and a share lock on its row, run as a trigger
-- after the statement. A successful 2-step saga writes 11 such rows (its
-- steps, events and checkpoints); measured with scripts/db-cost.sh
-- (DBCOST_TRACK=all), the checks took about a tenth of the statements'
-- execution time. Every statement that writes these rows writes them
-- joined to the saga row it inserts or updates (locked by then), so none
-- can name a saga that does not exist; the retention job deletes a saga's
-- rows with it (sqlDeleteExpired), where the cascade did. A compensation
-- keeps its foreign key to its step: it tells a compensation of a step
-- the saga does not have (errors.go), and it deletes with the step.
ALTER TABLE saga_steps DROP CONSTRAINT saga_steps_saga_id_fkey;
ALTER TABLE saga_compensations DROP CONSTRAINT saga_compensations_saga_id_fkey;
ALTER TABLE saga_checkpoints DROP CONSTRAINT saga_checkpoints_saga_id_fkey;
ALTER TABLE saga_events DROP CONSTRAINT saga_events_saga_id_fkey;

-- +goose Down
ALTER TABLE saga_events ADD FOREIGN KEY (saga_id) REFERENCES sagas (id) ON DELETE CASCADE;
ALTER TABLE saga_checkpoints ADD FOREIGN KEY (saga_id) REFERENCES sagas (id) ON DELETE CASCADE;
ALTER TABLE saga_compensations ADD FOREIGN KEY (saga_id) REFERENCES sagas (id) ON DELETE CASCADE;
ALTER TABLE saga_steps ADD FOREIGN KEY (saga_id) REFERENCES sagas (id) ON DELETE CASCADE;
