package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/participant"
)

// blockingInvoker answers every call only once released, so that sagas
// stay in flight: it stands for participants that take their time, without
// counting the memory of HTTP connections (see BenchmarkInFlightMemory).
type blockingInvoker struct {
	entered atomic.Int64
	release chan struct{}
}

func (inv *blockingInvoker) Invoke(ctx context.Context, call participant.Call) participant.Result {
	inv.entered.Add(1)
	select {
	case <-inv.release:
	case <-ctx.Done():
	}
	return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: http.StatusOK, Output: json.RawMessage(`{"ok":true}`)}
}

// BenchmarkInFlightMemory measures the heap and stack the engine holds per
// saga in flight: n two-step sagas are started on the PostgreSQL store and
// all wait inside their first participant call; the live heap and the
// goroutine stacks (after a full GC) are compared with before. Participant
// HTTP connections are not included: one open connection of net/http costs
// about 10 KiB more (two goroutines and 4 KiB read and write buffers) and is
// shared by the sagas calling the same host one after another.
func BenchmarkInFlightMemory(b *testing.B) {
	const n = 2000
	ctx := context.Background()
	store := openPostgres(b)
	inv := &blockingInvoker{release: make(chan struct{})}
	coord, err := engine.New(store, engine.Config{
		InstanceID:         "mem-bench",
		MaxConcurrentSagas: n,
		Invoker:            inv,
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = coord.Stop(stopCtx)
	}()
	def := saga.Definition{Name: "in-flight", Context: json.RawMessage(`{"order":"o-17"}`)}
	for _, name := range []string{"reserve", "charge"} {
		def.Steps = append(def.Steps, saga.StepDefinition{
			Name:         name,
			Action:       saga.Request{Method: http.MethodPost, URL: "http://participant.invalid/" + name, Body: json.RawMessage(`{"sku":"X","qty":2}`)},
			Compensation: &saga.Request{Method: http.MethodPost, URL: "http://participant.invalid/undo/" + name},
		})
	}

	for b.Loop() {
		beforeHeap, beforeStack := liveBytes()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, _, err := coord.Submit(ctx, def); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		for inv.entered.Load() < n {
			time.Sleep(time.Millisecond)
		}
		heap, stack := liveBytes()
		b.ReportMetric(float64(heap-beforeHeap+stack-beforeStack)/n, "bytes/in-flight-saga")
		b.ReportMetric(float64(heap-beforeHeap)/n, "heap-bytes/saga")
		b.ReportMetric(float64(stack-beforeStack)/n, "stack-bytes/saga")
		close(inv.release)
		for {
			page, err := coord.List(ctx, saga.Filter{Status: saga.SagaStatusExecuting, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Sagas) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		inv.release = make(chan struct{})
		inv.entered.Store(0)
	}
}

// liveBytes returns the heap in use and the goroutine stacks after a full GC.
func liveBytes() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse)
}
