-- +goose Up
-- Since 00006 a saga's steps, compensations, events and checkpoints have
-- no primary key, so their default replica identity is nothing: logical
-- replication (a major-version upgrade by a publication, a change-data
-- capture tool) would refuse their updates and deletes. Name the unique
-- keys the rows are found by as their identity; checkpoints, which have
-- none, are identified by the whole row (they are only inserted and
-- deleted). Under wal_level = replica this writes nothing more to the WAL.
ALTER TABLE saga_steps REPLICA IDENTITY USING INDEX saga_steps_saga_id_step_index_key;
ALTER TABLE saga_compensations REPLICA IDENTITY USING INDEX saga_compensations_saga_id_step_index_key;
ALTER TABLE saga_events REPLICA IDENTITY USING INDEX saga_events_saga_id_seq_key;
ALTER TABLE saga_checkpoints REPLICA IDENTITY FULL;

-- +goose Down
ALTER TABLE saga_checkpoints REPLICA IDENTITY DEFAULT;
ALTER TABLE saga_events REPLICA IDENTITY DEFAULT;
ALTER TABLE saga_compensations REPLICA IDENTITY DEFAULT;
ALTER TABLE saga_steps REPLICA IDENTITY DEFAULT;
