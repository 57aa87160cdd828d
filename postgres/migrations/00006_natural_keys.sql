-- +goose Up
-- Fewer index entries per saga. saga_events, saga_steps, saga_compensations
-- and saga_checkpoints had a primary key on a random UUID: every row
-- written also went into that index, at a random page. Rows are found by
-- their saga and position (seq, step_index), which a unique key on NOT
-- NULL columns already serves (and saga_compensations' foreign key to
-- saga_steps uses); checkpoints by their saga and time. Measured with
-- scripts/db-cost.sh (2-step sagas at c=16): 11 of the 38 index entries a
-- successful saga wrote were in these indexes. The id columns stay, NOT
-- NULL.
--
-- The one lookup by id was a transition's test that its first event is
-- not written yet (a retry of a write that committed but whose answer was
-- lost). The saga row keeps that id instead: last_write_id, the id of the
-- first event of the latest transition written; the test reads the row
-- the transition updates anyway, and the update stays HOT (no index has
-- the column). Adding a nullable column rewrites nothing.
ALTER TABLE sagas ADD COLUMN last_write_id UUID;
ALTER TABLE saga_events DROP CONSTRAINT saga_events_pkey;
ALTER TABLE saga_steps DROP CONSTRAINT saga_steps_pkey;
ALTER TABLE saga_compensations DROP CONSTRAINT saga_compensations_pkey;
ALTER TABLE saga_checkpoints DROP CONSTRAINT saga_checkpoints_pkey;

-- +goose Down
ALTER TABLE saga_checkpoints ADD PRIMARY KEY (id);
ALTER TABLE saga_compensations ADD PRIMARY KEY (id);
ALTER TABLE saga_steps ADD PRIMARY KEY (id);
ALTER TABLE saga_events ADD PRIMARY KEY (id);
ALTER TABLE sagas DROP COLUMN last_write_id;
