-- Rows, table and index sizes, and dead tuples of the saga tables.
SELECT c.relname AS table,
    s.n_live_tup AS live_rows, s.n_dead_tup AS dead_rows,
    pg_size_pretty(pg_table_size(c.oid)) AS table_size,
    pg_size_pretty(pg_indexes_size(c.oid)) AS index_size,
    s.n_tup_del AS deleted_total
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relname IN ('sagas', 'saga_steps', 'saga_compensations', 'saga_checkpoints', 'saga_events')
ORDER BY c.relname;
