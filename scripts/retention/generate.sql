-- Fills a migrated, empty tracseq database with :n finished sagas, as the
-- service writes them, in bulk: each has 2 steps, 10 events and a
-- checkpoint; 90% ended Completed, 10% Compensated (with 1 compensation);
-- they ended over one day, starting :days_ago days ago. Ids are
-- time-ordered like the service's UUIDv7 ids.
--
-- psql -v n=1000000 -v days_ago=3 -f generate.sql DATABASE
\set ON_ERROR_STOP on
SET synchronous_commit = off;

CREATE TEMP TABLE gen AS
SELECT i,
    ('01a20000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS id,
    now() - make_interval(days => :days_ago) + (i * (86400.0 / :n)) * interval '1 second' AS t,
    i % 10 = 0 AS compensated
FROM generate_series(1, :n) AS i;

INSERT INTO sagas (id, name, status, transaction_id, completed_steps, total_steps, created_at, updated_at,
    started_at, completed_at, transaction_context, definition, event_seq, lease_epoch, next_run_at)
SELECT g.id, 'order-' || (g.i % 7),
    CASE WHEN g.compensated THEN 'Compensated' ELSE 'Completed' END::saga_status,
    gen_random_uuid(), CASE WHEN g.compensated THEN 1 ELSE 2 END, 2,
    g.t, g.t + interval '80 ms', g.t, g.t + interval '80 ms',
    jsonb_build_object('order_id', g.i),
    '{"name": "order", "steps": [{"name": "reserve", "action": {"method": "POST", "url": "http://inventory.local/reserve", "body": {"sku": "A-1", "qty": 2}}, "compensation": {"method": "POST", "url": "http://inventory.local/release"}, "retry": {"max_attempts": 3, "initial_backoff_ms": 100}}, {"name": "charge", "action": {"method": "POST", "url": "http://payments.local/charge", "body": {"amount": 42}}, "compensation": {"method": "POST", "url": "http://payments.local/refund"}, "retry": {"max_attempts": 3, "initial_backoff_ms": 100}}]}'::jsonb,
    10, 1, NULL
FROM gen AS g;

INSERT INTO saga_steps (id, saga_id, step_name, step_index, status, input_data, output_data, attempts,
    started_at, completed_at, created_at, updated_at)
SELECT gen_random_uuid(), g.id, CASE k WHEN 0 THEN 'reserve' ELSE 'charge' END, k,
    CASE WHEN g.compensated AND k = 1 THEN 'Failed' ELSE 'Completed' END::step_status,
    '{"sku": "A-1", "qty": 2}', '{"ok": true, "reservation": "r-1"}', 1,
    g.t + k * interval '30 ms', g.t + (k + 1) * interval '30 ms', g.t, g.t + (k + 1) * interval '30 ms'
FROM gen AS g, generate_series(0, 1) AS k;

INSERT INTO saga_compensations (id, saga_id, step_index, status, attempts, started_at, completed_at, created_at, updated_at)
SELECT gen_random_uuid(), g.id, 0, 'Completed', 1, g.t + interval '60 ms', g.t + interval '70 ms', g.t, g.t + interval '70 ms'
FROM gen AS g WHERE g.compensated;

INSERT INTO saga_checkpoints (id, saga_id, step_index, context, created_at)
SELECT gen_random_uuid(), g.id, 0, jsonb_build_object('order_id', g.i, 'reserve', jsonb_build_object('ok', true)), g.t + interval '30 ms'
FROM gen AS g;

-- Event ids: time-ordered too, 10 per saga.
INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, created_at)
SELECT ('01a30000-0000-7000-8000-' || lpad(to_hex(e), 12, '0'))::uuid,
    g.id, s,
    (ARRAY['SagaCreated', 'SagaStarted', 'StepStarted', 'StepCompleted', 'StepStarted', 'StepCompleted',
        'LeaseTaken', 'StepStarted', 'StepCompleted', 'SagaCompleted'])[s],
    CASE WHEN s BETWEEN 3 AND 9 THEN (s - 3) / 3 END,
    CASE WHEN s IN (3, 5, 8) THEN '{"attempt": 1, "kind": "action", "status": 200}'::jsonb END,
    'tracseq-1', g.t + s * interval '8 ms'
FROM gen AS g, generate_series(1, 10) AS s, LATERAL (SELECT g.i * 10 + s AS e) AS x;

VACUUM ANALYZE sagas, saga_steps, saga_compensations, saga_checkpoints, saga_events;
