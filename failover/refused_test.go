package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/failover"
)

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A database that starts answering and refuses the connection while the
// service runs in memory is reported as a configuration error at every
// attempt, not as an outage.
func TestRefusedDatabaseIsAConfigurationError(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	attempts := make(chan struct{}, 16)
	fo, err := failover.New(failover.Config{
		Connect: func(context.Context) (failover.Durable, error) {
			select {
			case attempts <- struct{}{}:
			default:
			}
			return nil, fmt.Errorf("connect to PostgreSQL at db:5432/tx: %w: FATAL: password authentication failed (SQLSTATE 28P01)", saga.ErrAccessRefused)
		},
		RetryEvery: time.Millisecond,
		RetryMax:   time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	fo.Start(context.Background())
	defer fo.Close()
	for range 3 {
		select {
		case <-attempts:
		case <-time.After(20 * time.Second):
			t.Fatal("the reconnect loop did not try again")
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "REFUSES") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no repeated configuration error in the log:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a refusal logged as a mere warning:\n%s", logs.String())
	}
	if h := fo.Health(context.Background()); h.Durable || !strings.Contains(h.Error, "refused") {
		t.Errorf("Health = %+v", h)
	}
}
