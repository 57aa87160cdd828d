package main

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tracseq/transaction-service/barrier"
)

// effectsDDL is the participant's own table in durable mode: one row per
// operation that took effect.
const effectsDDL = `CREATE TABLE IF NOT EXISTS participant_effects (
	route   TEXT        NOT NULL,
	saga_id TEXT        NOT NULL,
	step    TEXT        NOT NULL,
	op      TEXT        NOT NULL,
	answer  JSONB       NOT NULL,
	at      TIMESTAMPTZ NOT NULL DEFAULT now()
)`

const sqlInsertEffect = `INSERT INTO participant_effects (route, saga_id, step, op, answer) VALUES ($1, $2, $3, $4, $5)`

// NewDurableServer returns the participant on PostgreSQL: every route runs
// behind the saga barrier (package barrier), which records each call in the
// same transaction as the effect it books in participant_effects. A
// repeated call gets its first answer, and an action arriving after its
// compensation is refused and changes nothing. The tables are created when
// absent.
func NewDurableServer(ctx context.Context, pool *pgxpool.Pool, cfg Config) (http.Handler, error) {
	if err := barrier.CreateTables(ctx, pool); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, effectsDDL); err != nil {
		return nil, fmt.Errorf("create participant_effects: %w", err)
	}
	b, err := barrier.New(barrier.Config{DB: pool, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := NewServer(cfg) // its checks and answers; the effect goes to the database
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle("POST /"+rt.path, b.Handler(func(w http.ResponseWriter, r *http.Request, tx pgx.Tx) {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
			if status, msg := s.refusal(r.Context(), rt, body, err); status != 0 {
				if status > 0 {
					writeJSON(w, status, mustJSON(map[string]any{"error": msg}))
				}
				return
			}
			key, _ := barrier.KeyFromRequest(r)
			out := mustJSON(rt.answer(newID()))
			if _, err := tx.Exec(r.Context(), sqlInsertEffect, rt.path, key.Saga, key.Step, string(key.Op), out); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, mustJSON(map[string]any{"error": "book effect: " + err.Error()}))
				return
			}
			writeJSON(w, http.StatusOK, out)
		}))
	}
	mux.Handle("GET /health", s)
	return mux, nil
}
