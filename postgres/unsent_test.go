package postgres

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/storetest"
)

// cutProxy forwards TCP connections to PostgreSQL until cut: then it closes
// every connection it carries and refuses new ones, as a database that went
// away would.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			client.Close()
			server.Close()
			continue
		}
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(server, client); server.Close() })
		p.wg.Go(func() { io.Copy(client, server); client.Close() })
	}
}

// cutAll closes the listener (new connections are refused) and every
// connection carried.
func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// openViaProxy opens a store with hooks on a fresh migrated database,
// reached through a cutProxy.
func openViaProxy(t *testing.T, h hooks) (*bundle, *cutProxy) {
	t.Helper()
	b := setup(t, hooks{}) // migrates, and gives b.db, a pool that is never cut
	u, err := url.Parse(b.store.Pool().Config().ConnString())
	if err != nil || u.Host == "" {
		t.Fatalf("test database URL %q is not a URL with a host", pgtest.ServerURL())
	}
	p := newCutProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	s, err := open(b.ctx, Config{URL: u.String(), MaxConns: 2, MinConns: 0}, h)
	if err != nil {
		t.Fatalf("open via proxy: %v", err)
	}
	t.Cleanup(s.Close)
	b.store = s
	return b, p
}

// A create that never reached the database says so (ErrNotWritten beside
// ErrUnavailable), and so does Health (Unreachable); a create that reached
// it and lost its answer does not, and indeed it committed.
func TestCreateUnreachableSaysWhetherWritten(t *testing.T) {
	t.Parallel()
	t.Run("never sent", func(t *testing.T) {
		t.Parallel()
		b, p := openViaProxy(t, hooks{})
		b.create(t, "w") // the pool has a connection
		p.cutAll()
		b.store.Pool().Reset()
		_, _, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 2), LeaseFor: time.Hour})
		if !errors.Is(err, saga.ErrUnavailable) || !errors.Is(err, saga.ErrNotWritten) {
			t.Fatalf("CreateSaga with the database gone = %v, want ErrUnavailable and ErrNotWritten", err)
		}
		if h := b.store.Health(b.ctx); h.Error == "" || !h.Unreachable {
			t.Errorf("Health with the database gone = %+v, want the error, unreachable", h)
		}
	})
	t.Run("committed, answer lost", func(t *testing.T) {
		t.Parallel()
		h, armed := armedStall(true)
		b, p := openViaProxy(t, h)
		in := storetest.NewTestSaga("w", 2)
		armed.Store(true)
		done := make(chan error, 1)
		go func() {
			_, _, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: in, LeaseFor: time.Hour})
			done <- err
		}()
		b.stalled(t) // committed; the answer waits behind the stall
		p.cutAll()
		err := <-done
		if !errors.Is(err, saga.ErrUnavailable) || errors.Is(err, saga.ErrNotWritten) {
			t.Fatalf("CreateSaga whose answer was lost = %v, want ErrUnavailable without ErrNotWritten", err)
		}
		var n int
		if err := b.db.QueryRow(b.ctx, `SELECT count(*) FROM sagas WHERE id = $1`, in.ID).Scan(&n); err != nil || n != 1 {
			t.Errorf("the saga is stored %d times (%v), want once: the failed create had committed", n, err)
		}
	})
	t.Run("closed store", func(t *testing.T) {
		t.Parallel()
		b := setup(t, hooks{})
		b.store.Close()
		_, _, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 2)})
		if !errors.Is(err, saga.ErrUnavailable) || !errors.Is(err, saga.ErrNotWritten) {
			t.Fatalf("CreateSaga on a closed store = %v, want ErrUnavailable and ErrNotWritten", err)
		}
	})
}

// A transition committed whose answer was lost, with the store's own
// retries failing too, reports an error; the caller sending the same
// transition (the same event ids) again once the database answers is told
// it was written, and it is not written twice.
func TestApplyRetriedByCallerAfterLostAnswer(t *testing.T) {
	t.Parallel()
	h, armed := armedStall(true)
	b, p := openViaProxy(t, h)
	sg := b.create(t, "w")
	tr := stepDone(sg, sg.Lease())
	for i := range tr.Events {
		tr.Events[i].ID = saga.NewID() // as the engine does, once per transition
	}
	armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := b.store.Apply(b.ctx, tr)
		done <- err
	}()
	b.stalled(t) // committed; the answer waits behind the stall
	p.cutAll()
	if err := <-done; !errors.Is(err, saga.ErrUnavailable) {
		t.Fatalf("Apply whose answer was lost = %v, want ErrUnavailable", err)
	}
	// The database answers again (a store that reaches it directly).
	direct, err := Open(b.ctx, Config{URL: b.db.Config().ConnString(), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	a, err := direct.Apply(b.ctx, tr)
	if err != nil {
		t.Fatalf("the same transition sent again: %v", err)
	}
	if a.EventSeq != 3 {
		t.Errorf("Applied.EventSeq = %d, want 3", a.EventSeq)
	}
	if got := b.state(t, sg.ID); got != afterStepDone {
		t.Errorf("after the caller's retry: %+v, want %+v (written once)", got, afterStepDone)
	}
}
