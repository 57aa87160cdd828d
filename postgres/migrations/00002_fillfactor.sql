-- +goose Up
-- More free room on each page of sagas and saga_steps, so that a
-- transition's update of a row that changes no indexed column stays HOT
-- (heap-only: no index entries) when many sagas run at once. A sagas row
-- is ~1.4 kB (the definition is stored inline): at fill factor 85 a page
-- keeps room for one new row version only, and with 16 or 64 sagas in
-- flight most such updates found no room and wrote an entry in each of the
-- table's eight indexes. Measured with BenchmarkSagaLifecycle at
-- concurrency 64: HOT updates of sagas 17% -> 50% (all that can be: the
-- last update changes the status), of saga_steps 69% -> 98%, PostgreSQL CPU
-- per saga -7%. The tables take about twice the pages; finished sagas are
-- deleted after their retention. The setting applies to pages filled from
-- now on.
ALTER TABLE sagas SET (fillfactor = 50);
ALTER TABLE saga_steps SET (fillfactor = 50);

-- +goose Down
ALTER TABLE sagas SET (fillfactor = 85);
ALTER TABLE saga_steps SET (fillfactor = 85);
