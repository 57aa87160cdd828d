package postgres

import (
	"context"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// opCountRows is the Config.Observe name of CountRows.
const opCountRows = "count_rows"

// sqlCountRowsOf counts the rows of the sagas $1 in the five tables.
const sqlCountRowsOf = `
SELECT (SELECT count(*) FROM sagas WHERE id = ANY($1::uuid[])),
	(SELECT count(*) FROM saga_steps WHERE saga_id = ANY($1::uuid[])),
	(SELECT count(*) FROM saga_compensations WHERE saga_id = ANY($1::uuid[])),
	(SELECT count(*) FROM saga_checkpoints WHERE saga_id = ANY($1::uuid[])),
	(SELECT count(*) FROM saga_events WHERE saga_id = ANY($1::uuid[]))`

// CountRows counts the rows the given sagas have in the five tables, from
// one snapshot. It checks a move of sagas into the database.
func (s *Store) CountRows(ctx context.Context, ids []saga.ID) (c saga.TableCounts, err error) {
	defer s.observe(opCountRows, time.Now(), &err)
	err = retry(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, sqlCountRowsOf, ids).Scan(&c.Sagas, &c.Steps, &c.Compensations, &c.Checkpoints, &c.Events)
	})
	if err != nil {
		return saga.TableCounts{}, interpretError("count rows", err)
	}
	return c, nil
}
