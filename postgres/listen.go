package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotifyChannel is the channel on which the database announces sagas that
// any instance may run (migration 00003: a trigger on sagas notifies in
// the transaction that releases a saga, parks it until a retry is due,
// creates it unleased or records an operator request on it). The payload
// is the number of milliseconds until the saga is due.
const NotifyChannel = "tracseq_runnable"

// Defaults of ListenerConfig.
const (
	// FallbackPollDefault is how often the listener wakes the claim loop
	// while it cannot listen (the database is away or refuses LISTEN):
	// the poll the service had before it listened.
	FallbackPollDefault = time.Second
	// listenReconnectMax bounds the wait between connection attempts.
	listenReconnectMax = 5 * time.Second
	// dueGranularity rounds announced due times up: one wake serves the
	// work that comes due within it.
	dueGranularity = 10 * time.Millisecond
	// maxDues bounds the due times remembered; later ones are left to the
	// slow poll.
	maxDues = 4096
)

// Listener holds one session connection that LISTENs on NotifyChannel and
// calls Wake when work becomes runnable: at once for work due now, on a
// timer for work due later. After every (re)connection it calls Wake once,
// for notifications it may have missed, and while it cannot listen it
// calls Wake every FallbackPoll, so that the claim loop's own poll can be
// slow. Start it with Start, stop it with Stop.
type Listener struct {
	connConfig *pgx.ConnConfig
	wake       func()
	logger     *slog.Logger
	poll       time.Duration

	mu        sync.Mutex
	timer     *time.Timer
	dues      []time.Time // announced due times still to come, sorted
	stopped   bool
	listening bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// ListenerConfig configures NewListener.
type ListenerConfig struct {
	// DB is the store's configuration: the listener connects to its
	// DirectURL (else URL), never through a pooler.
	DB Config
	// Wake is called when runnable work was announced (required). It must
	// not block.
	Wake func()
	// FallbackPoll is the period of Wake while not listening (default
	// FallbackPollDefault).
	FallbackPoll time.Duration
	Logger       *slog.Logger
}

// NewListener returns a Listener, not started. Its error names the
// configuration problem.
func NewListener(cfg ListenerConfig) (*Listener, error) {
	if cfg.Wake == nil {
		return nil, errors.New("postgres listener: Wake must not be nil")
	}
	if cfg.FallbackPoll < 0 {
		return nil, fmt.Errorf("postgres listener: FallbackPoll %v is negative", cfg.FallbackPoll)
	}
	cc, err := cfg.DB.directConnConfig()
	if err != nil {
		return nil, fmt.Errorf("configure listener: %w", err)
	}
	poll := cfg.FallbackPoll
	if poll == 0 {
		poll = FallbackPollDefault
	}
	return &Listener{
		connConfig: cc,
		wake:       cfg.Wake,
		logger:     orDiscard(cfg.Logger).With("component", "listener"),
		poll:       poll,
	}, nil
}

// Start starts listening in the background and returns at once; the first
// connection is made by the background loop (until it succeeds, Wake is
// called every FallbackPoll). It stops when ctx is cancelled or Stop is
// called.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return errors.New("postgres listener: already started")
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.loop(ctx)
	return nil
}

// Stop stops the listener and waits for it. It is safe to call more than
// once and before Start.
func (l *Listener) Stop() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.dues = nil
	l.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Listening reports whether the listener holds a live LISTEN now.
func (l *Listener) Listening() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listening
}

// loop connects, listens until the connection fails, and starts again;
// between attempts it wakes the claim loop at the fallback period.
func (l *Listener) loop(ctx context.Context) {
	defer close(l.done)
	wait := l.poll
	for ctx.Err() == nil {
		err := l.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		l.logger.Warn("not listening for runnable work: falling back to polling every "+l.poll.String(),
			"error", err, "retry_in", wait.String())
		// Poll while away: wake now and every poll until the next attempt.
		deadline := time.Now().Add(wait)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			l.wake()
			sleep(ctx, min(l.poll, time.Until(deadline)))
		}
		wait = min(wait*2, listenReconnectMax)
	}
}

// runOnce connects, LISTENs, wakes the claim loop once (for what was
// announced while not listening) and handles notifications until the
// connection fails or ctx ends.
func (l *Listener) runOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, l.connConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		l.setListening(false)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen on %s: %w", NotifyChannel, err)
	}
	l.setListening(true)
	l.logger.Debug("listening for runnable work", "channel", NotifyChannel)
	l.wake()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		l.handle(n.Payload)
	}
}

func (l *Listener) setListening(v bool) {
	l.mu.Lock()
	l.listening = v
	l.mu.Unlock()
}

// handle acts on one notification: wake now when the work is due, else
// remember when it is due and keep the timer set for the earliest such time.
func (l *Listener) handle(payload string) {
	ms, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || ms <= 0 {
		l.wake()
		return
	}
	// Due times are kept to dueGranularity: announcements that close
	// together need one wake.
	due := time.Now().Add(time.Duration(ms) * time.Millisecond).Truncate(dueGranularity).Add(dueGranularity)
	l.mu.Lock()
	defer l.mu.Unlock()
	i, found := slices.BinarySearchFunc(l.dues, due, time.Time.Compare)
	if found || i >= maxDues {
		// Known already, or too many pending: the slow poll finds the latest.
		return
	}
	l.dues = slices.Insert(l.dues, i, due)
	if len(l.dues) > maxDues {
		l.dues = l.dues[:maxDues]
	}
	if i == 0 {
		l.armLocked()
	}
}

// armLocked sets the timer for the earliest pending due time.
func (l *Listener) armLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.dues) > 0 && !l.stopped {
		l.timer = time.AfterFunc(time.Until(l.dues[0]), l.fire)
	}
}

// fire is the timer's wake: it drops the due times that have come and
// sets the timer for the next.
func (l *Listener) fire() {
	l.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(l.dues) && !l.dues[n].After(now) {
		n++
	}
	l.dues = l.dues[n:]
	l.armLocked()
	l.mu.Unlock()
	l.wake()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
