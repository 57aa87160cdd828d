package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

var _ saga.AuditStore = (*Store)(nil)

// Operation names of the audit reads and writes.
const (
	opChains       = "audit_chains"
	opExportEvents = "audit_export"
	opDeletions    = "audit_deletions"
)

// Chains reads the chains of up to q.EffectiveLimit() sagas matching q in
// one read transaction, streaming; see saga.AuditStore.
func (s *Store) Chains(ctx context.Context, q saga.ChainQuery, head func(saga.ChainHead) error, event func(saga.Event) error) (n int, last saga.ID, err error) {
	defer s.observe(opChains, time.Now(), &err)
	var ids any
	if q.IDs != nil {
		texts := make([]string, len(q.IDs))
		for i, id := range q.IDs {
			texts[i] = idText(id)
		}
		b, err := json.Marshal(texts)
		if err != nil {
			return 0, saga.NilID, fmt.Errorf("read audit chains: %w", err)
		}
		ids = string(b)
	}
	since := timeMin
	if !q.Since.IsZero() {
		since = fmtTime(q.Since)
	}
	after := ""
	if !q.After.IsZero() {
		after = idText(q.After)
	}
	err = s.readTx(ctx, func(r *rtx) error {
		rows, err := r.query(sqlChainHeads, sql.Named("after", after), sql.Named("since", since),
			sql.Named("ids", ids), sql.Named("limit", q.EffectiveLimit()))
		if err != nil {
			return err
		}
		var heads []saga.ChainHead
		for rows.Next() {
			var h saga.ChainHead
			if err := rows.Scan(idCol{&h.SagaID}, &h.Seq, &h.Hash); err != nil {
				rows.Close()
				return err
			}
			heads = append(heads, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(heads) == 0 {
			return err
		}
		texts := make([]string, len(heads))
		for i, h := range heads {
			texts[i] = idText(h.SagaID)
		}
		b, err := json.Marshal(texts)
		if err != nil {
			return err
		}
		if rows, err = r.query(sqlChainEvents, sql.Named("ids", string(b))); err != nil {
			return err
		}
		defer rows.Close()
		next := 0 // the next head to announce
		announce := func(upTo saga.ID) error {
			for next < len(heads) && bytes.Compare(heads[next].SagaID[:], upTo[:]) <= 0 {
				n, last = next+1, heads[next].SagaID
				if err := head(heads[next]); err != nil {
					return err
				}
				next++
			}
			return nil
		}
		for rows.Next() {
			var e saga.Event
			if err := rows.Scan(append([]any{idCol{&e.SagaID}}, eventDest(&e)...)...); err != nil {
				return err
			}
			if err := announce(e.SagaID); err != nil {
				return err
			}
			if err := event(e); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return announce(heads[len(heads)-1].SagaID)
	})
	if err != nil {
		return n, last, interpretError("read audit chains", err)
	}
	return n, last, nil
}

// ExportEvents streams the events created in [from, to) from one read
// transaction; see saga.AuditStore.
func (s *Store) ExportEvents(ctx context.Context, from, to time.Time, fn func(saga.Event, []byte) error) (err error) {
	defer s.observe(opExportEvents, time.Now(), &err)
	err = s.readTx(ctx, func(r *rtx) error {
		rows, err := r.query(sqlAuditExport, sql.Named("from", fmtTime(from)), sql.Named("to", fmtTime(to)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e    saga.Event
				prev []byte
			)
			dest := append(append([]any{idCol{&e.SagaID}}, eventDest(&e)...), &prev)
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			if err := fn(e, prev); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return interpretError("export events", err)
	}
	return nil
}

// Deletions streams the tombstones of the sagas deleted in [from, to);
// see saga.AuditStore.
func (s *Store) Deletions(ctx context.Context, from, to time.Time, fn func(saga.Deletion) error) (err error) {
	defer s.observe(opDeletions, time.Now(), &err)
	err = s.readTx(ctx, func(r *rtx) error {
		rows, err := r.query(sqlDeletions, sql.Named("from", fmtTime(from)), sql.Named("to", fmtTime(to)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d saga.Deletion
			if err := rows.Scan(idCol{&d.SagaID}, &d.Name, textCol[saga.SagaStatus]{&d.Status}, &d.EventSeq, &d.LastHash,
				nullTimeCol{&d.CompletedAt}, timeCol{&d.DeletedAt}, &d.Rule, textCol[string]{&d.Actor},
				textCol[string]{&d.Reason}, textCol[string]{&d.Address}); err != nil {
				return err
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return interpretError("read deletions", err)
	}
	return nil
}

// SetLegalHold sets or clears a saga's legal hold with its
// LegalHoldChanged event, in one write; see saga.Store.
func (s *Store) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (sg *saga.Saga, err error) {
	defer s.observe(opSetLegalHold, time.Now(), &err)
	var got *saga.Saga // set on the writer's goroutine only
	err = s.writer.submit(ctx, func(w *wtx) error {
		h, err := readHead(w, id)
		if err != nil {
			return err
		}
		events, next, err := s.chain.SealLegalHold(ctx, h.chain, hold, w.now)
		if err != nil {
			return err
		}
		var out *saga.Saga
		if err := w.queryRow(sqlSetLegalHold, []any{sql.Named("id", idText(id)), sql.Named("hold", boolInt(hold)),
			sql.Named("now", w.nowText()), sql.Named("event_seq", next.Seq), sql.Named("last_hash", next.Hash)},
			sagaDest(&out, s.sealer)...); err != nil {
			return err
		}
		if err := insertEvents(w, events); err != nil {
			return err
		}
		got = out
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("set legal hold of saga %s: %w", id, saga.ErrNotFound)
	}
	if err != nil {
		return nil, interpretError("set legal hold of saga "+id.String(), err)
	}
	return got, nil
}
