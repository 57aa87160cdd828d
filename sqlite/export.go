package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// ExportPageDefault is the number of sagas Export reads at a time.
const ExportPageDefault = 100

// Export calls fn with every saga of the store as records (row with steps
// and compensations, events, checkpoints), in id order, pageSize at a time
// (ExportPageDefault when <= 0), each page read from one snapshot. It
// stops at fn's first error and returns it. It is what moves a SQLite
// database to PostgreSQL; the records keep their ids, times, sequence
// numbers and leases.
func (s *Store) Export(ctx context.Context, pageSize int, fn func([]saga.SagaRecord) error) (err error) {
	defer s.observe(opExport, time.Now(), &err)
	if pageSize <= 0 {
		pageSize = ExportPageDefault
	}
	after := ""
	for {
		var page []saga.SagaRecord
		err := s.readTx(ctx, func(r *rtx) error {
			var err error
			page, err = exportPage(r, after, pageSize, s.sealer)
			return err
		})
		if err != nil {
			return interpretError("export sagas", err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < pageSize {
			return nil
		}
		after = idText(page[len(page)-1].Saga.ID)
	}
}

// exportPage reads the records of up to limit sagas with ids after after.
func exportPage(r *rtx, after string, limit int, sealer *saga.Sealer) ([]saga.SagaRecord, error) {
	rows, err := r.query(sqlExportSagas, sql.Named("after", after), sql.Named("limit", limit))
	if err != nil {
		return nil, err
	}
	var (
		sagas   []*saga.Saga
		pending []saga.PendingControl
	)
	for rows.Next() {
		var (
			sg     *saga.Saga
			h      head
			ctlSeq sql.NullInt64
		)
		dest := append(sagaDest(&sg, sealer), &h.chain.Seq, &h.chain.Hash, textCol[saga.ControlAction]{&h.pending.Action},
			&ctlSeq, textCol[string]{&h.pending.Actor})
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return nil, err
		}
		h.pending.Seq = ctlSeq.Int64
		sagas = append(sagas, sg)
		pending = append(pending, h.pending)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(sagas) == 0 {
		return nil, err
	}
	if err := loadSteps(r, sagas); err != nil {
		return nil, err
	}
	ids := make([]string, len(sagas))
	byID := make(map[saga.ID]*saga.SagaRecord, len(sagas))
	out := make([]saga.SagaRecord, len(sagas))
	for i, sg := range sagas {
		ids[i] = idText(sg.ID)
		out[i] = saga.SagaRecord{Saga: sg, Events: []saga.Event{}, Checkpoints: []saga.Checkpoint{}, Pending: pending[i]}
		byID[sg.ID] = &out[i]
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	idsArg := sql.Named("ids", string(idsJSON))

	rows, err = r.query(sqlExportEvents, idsArg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var e saga.Event
		dest := append([]any{idCol{&e.SagaID}}, eventDest(&e)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		rec := byID[e.SagaID]
		rec.Events = append(rec.Events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	rows, err = r.query(sqlExportCheckpoints, idsArg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var cp saga.Checkpoint
		if err := rows.Scan(idCol{&cp.SagaID}, &cp.StepIndex, jsonCol{&cp.Context}, timeCol{&cp.CreatedAt}); err != nil {
			return nil, err
		}
		rec := byID[cp.SagaID]
		rec.Checkpoints = append(rec.Checkpoints, cp)
	}
	return out, rows.Err()
}

// CountRows counts the rows of the five tables, from one snapshot.
func (s *Store) CountRows(ctx context.Context) (c saga.TableCounts, err error) {
	err = s.readTx(ctx, func(r *rtx) error {
		return r.queryRow(sqlCountRows, nil, &c.Sagas, &c.Steps, &c.Compensations, &c.Checkpoints, &c.Events)
	})
	if err != nil {
		return saga.TableCounts{}, interpretError("count rows", err)
	}
	return c, nil
}

// RecordMove records in the file that its sagas (n of them) were moved
// to target (a description of the database, without its password). From
// then on Open refuses the file, wrapping ErrMoved, so that no instance
// runs its sagas here as well as there.
func (s *Store) RecordMove(ctx context.Context, target string, n int) error {
	err := s.writer.submit(ctx, func(w *wtx) error {
		_, err := w.exec(sqlRecordMove, sql.Named("target", target), sql.Named("now", w.nowText()), sql.Named("sagas", n))
		return err
	})
	if err != nil {
		return interpretError(fmt.Sprintf("record the move to %s", target), err)
	}
	return nil
}
