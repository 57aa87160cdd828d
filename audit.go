package saga

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The audit events that stores write themselves, for operator requests.
const (
	// EventOperatorRequested records an operator's request when it is made:
	// its actor is the name of the API token, its data the action, the
	// reason given and the client's address.
	EventOperatorRequested EventType = "OperatorRequested"
	// EventOperatorRequestSuperseded records that a newer request replaced
	// a pending one before it was carried out (data: the action replaced,
	// the seq of its OperatorRequested event, who had asked, and the action
	// replacing it).
	EventOperatorRequestSuperseded EventType = "OperatorRequestSuperseded"
	// EventOperatorRequestCarriedOut records that the pending request was
	// carried out by the write that holds it (data: the action, the seq of
	// its OperatorRequested event and the outcome: "carried_out", or
	// "ignored" when the saga had moved to a status that no longer allows
	// it). Its actor is the one who asked.
	EventOperatorRequestCarriedOut EventType = "OperatorRequestCarriedOut"
	// EventLegalHoldChanged records that a legal hold was set or lifted
	// (data: legal_hold, the reason and the client's address); its actor
	// asked.
	EventLegalHoldChanged EventType = "LegalHoldChanged"
	// EventControlIgnored is the engine's event for a request no longer
	// allowed when its runner got to it (the same text as
	// engine.EventControlIgnored).
	EventControlIgnored EventType = "ControlIgnored"
)

// Outcomes of an OperatorRequestCarriedOut event.
const (
	OutcomeCarriedOut = "carried_out"
	OutcomeIgnored    = "ignored"
)

// MaxReasonLength bounds the reason an operator gives with a request.
const MaxReasonLength = 1000

// AnonymousActor is the actor of requests on an API without tokens.
const AnonymousActor = "anonymous"

// Requester is who made an operator request: the name of the API token
// that authenticated it, the reason given, the client's address and the
// instance that received it. It is request-scoped data: the API puts it in
// the request's context (WithRequester) and the stores read it where the
// request is written (CreateSaga, RequestControl, DeleteFinished), so that
// the layers in between pass it on without knowing it.
type Requester struct {
	Actor    string
	Reason   string
	Address  string
	Instance string
}

type requesterKey struct{}

// WithRequester returns ctx carrying r.
func WithRequester(ctx context.Context, r Requester) context.Context {
	return context.WithValue(ctx, requesterKey{}, r)
}

// RequesterFrom returns the requester ctx carries, if any.
func RequesterFrom(ctx context.Context) (Requester, bool) {
	r, ok := ctx.Value(requesterKey{}).(Requester)
	return r, ok
}

// PendingControl is the operator request a saga holds: its action, the seq
// of its OperatorRequested event and who asked.
type PendingControl struct {
	Action ControlAction
	Seq    int64
	Actor  string
}

// ChainHead is the end of a saga's audit chain as the saga row keeps it:
// the seq and the hash of its latest event (Seq 0 and no hash: no event).
type ChainHead struct {
	SagaID ID
	Seq    int64
	Hash   []byte
}

// HashSize is the size of an event hash.
const HashSize = sha256.Size

// hashDomain starts every hashed message: the version of the format.
const hashDomain = "tracseq.audit.v1\n"

// Chain computes and checks the hash chain of audit events: SHA-256, or
// HMAC-SHA-256 with a secret key (AUDIT_HMAC_KEY). Every store seals the
// events it writes with it (Seal), at the store boundary, so that every
// store writes the same hashes; verification (Verify, ChainVerifier)
// recomputes them from the events as stored. A nil *Chain is the plain
// SHA-256 chain.
type Chain struct {
	key   []byte
	macs  sync.Pool // of HMAC states keyed with key, reused
	plain sync.Pool // of SHA-256 states
}

// NewChain returns the chain keyed with key (nil or empty: plain SHA-256).
func NewChain(key []byte) *Chain {
	return &Chain{key: bytes.Clone(key)}
}

// Keyed reports whether the chain uses an HMAC key.
func (c *Chain) Keyed() bool { return c != nil && len(c.key) > 0 }

// hashState is a pooled hash state with a buffer in which the fields of a
// message are laid out, so that they reach the hash in a few writes.
type hashState struct {
	h   hash.Hash
	buf []byte
}

// getHash returns a fresh hash state of the chain; putHash gives it back.
func (c *Chain) getHash() *hashState {
	if c == nil {
		return &hashState{h: sha256.New()}
	}
	pool := &c.plain
	if c.Keyed() {
		pool = &c.macs
	}
	if s, ok := pool.Get().(*hashState); ok {
		s.h.Reset()
		return s
	}
	s := &hashState{buf: make([]byte, 0, 256)}
	if c.Keyed() {
		s.h = hmac.New(sha256.New, c.key)
	} else {
		s.h = sha256.New()
	}
	return s
}

func (c *Chain) putHash(s *hashState) {
	if cap(s.buf) > 4096 {
		s.buf = nil // a long instance or actor name: not worth keeping
	}
	switch {
	case c == nil:
	case c.Keyed():
		c.macs.Put(s)
	default:
		c.plain.Put(s)
	}
}

// Hash returns the hash of e chained to prev, the hash of the event before
// it in its saga (nil for the first). It covers e's ID, SagaID, Seq, Type,
// StepIndex, Data (in canonical form, see CanonicalJSON), InstanceID, Actor
// and CreatedAt to the millisecond. An error says that e's data is not
// valid JSON.
func (c *Chain) Hash(prev []byte, e *Event) ([]byte, error) {
	data, err := CanonicalJSON(e.Data)
	if err != nil {
		return nil, fmt.Errorf("event %d data: %w", e.Seq, err)
	}
	return c.hashCanonical(prev, e, data), nil
}

// hashCanonical is Hash with the data in canonical form already. The
// message is the domain, then each field in order, variable-length ones
// with their length in front (appendField).
func (c *Chain) hashCanonical(prev []byte, e *Event, data []byte) []byte {
	s := c.getHash()
	defer c.putHash(s)
	var zero [HashSize]byte
	if len(prev) == 0 {
		prev = zero[:]
	}
	b := append(s.buf[:0], hashDomain...)
	b = appendField(b, prev)
	b = append(b, e.ID[:]...)
	b = append(b, e.SagaID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = appendField(b, string(e.Type))
	if e.StepIndex == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(int64(*e.StepIndex)))
	}
	// data, often the largest field, goes to the hash from where it is.
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	s.h.Write(b)
	s.h.Write(data)
	b = appendField(b[:0], e.InstanceID)
	b = appendField(b, e.Actor)
	b = binary.BigEndian.AppendUint64(b, uint64(e.CreatedAt.UnixMilli()))
	s.h.Write(b)
	s.buf = b
	return s.h.Sum(nil)
}

// appendField appends v with its length in front.
func appendField[T string | []byte](b []byte, v T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// Seal prepares events appended to a saga's trail after head, as every
// store writes them: each gets an id when it has none, the saga's id, the
// next sequence number, the time at (UTC, microseconds), its data in
// canonical form and its hash, chained to the one before. It changes the
// events in place and returns the new head. An error names an event whose
// data is not valid JSON; the events are unchanged then. The stores seal
// the events of their writes with SealCreate, SealTransition, SealControl
// and SealLegalHold, which prepare them first.
func (c *Chain) Seal(head ChainHead, events []Event, at time.Time) (ChainHead, error) {
	drafts := make([]draft, len(events))
	for i := range events {
		drafts[i].e = events[i]
	}
	sealed, next, err := c.seal(head, drafts, at)
	if err != nil {
		return head, err
	}
	copy(events, sealed)
	return next, nil
}

// draft is an event a store is about to write, with the members its data
// gains where it lacks them.
type draft struct {
	e     Event
	extra []member
}

// seal seals drafts after head at time at; see Seal.
func (c *Chain) seal(head ChainHead, drafts []draft, at time.Time) ([]Event, ChainHead, error) {
	out := make([]Event, len(drafts))
	for i := range drafts {
		d, err := canonicalize(drafts[i].e.Data, drafts[i].extra)
		if err != nil {
			return nil, head, fmt.Errorf("event %d (%s) data: %w", i, drafts[i].e.Type, err)
		}
		out[i] = drafts[i].e
		out[i].Data = d
	}
	at = at.Round(0).UTC().Truncate(time.Microsecond)
	for i := range out {
		e := &out[i]
		if e.ID.IsZero() {
			e.ID = NewID()
		}
		e.SagaID = head.SagaID
		head.Seq++
		e.Seq = head.Seq
		e.CreatedAt = at
		e.Hash = c.hashCanonical(head.Hash, e, e.Data)
		head.Hash = e.Hash
	}
	return out, head, nil
}

// ChainBreak is the first place where a saga's stored trail does not
// match its hash chain.
type ChainBreak struct {
	SagaID  ID
	Seq     int64 // the first bad event, or the one missing
	EventID ID    // zero when the event is missing
	Problem string
}

// Error implements error: "saga S: event N: problem".
func (b *ChainBreak) Error() string {
	return fmt.Sprintf("saga %s: event %d: %s", b.SagaID, b.Seq, b.Problem)
}

// ChainVerifier checks one saga's events as they stream by, in seq order,
// against the saga row's head. Build it with Chain.Verifier.
type ChainVerifier struct {
	chain  *Chain
	head   ChainHead
	prev   []byte
	next   int64
	legacy int64
	broken *ChainBreak
}

// Verifier returns a verifier of the saga whose row holds head.
func (c *Chain) Verifier(head ChainHead) *ChainVerifier {
	return &ChainVerifier{chain: c, head: head, next: 1}
}

func (v *ChainVerifier) fail(seq int64, id ID, format string, args ...any) {
	v.broken = &ChainBreak{SagaID: v.head.SagaID, Seq: seq, EventID: id, Problem: fmt.Sprintf(format, args...)}
}

// Add checks the next event. After the first break it ignores the rest.
func (v *ChainVerifier) Add(e Event) {
	if v.broken != nil {
		return
	}
	switch {
	case e.SagaID != v.head.SagaID:
		v.fail(e.Seq, e.ID, "belongs to saga %s", e.SagaID)
		return
	case e.Seq < v.next:
		v.fail(e.Seq, e.ID, "seq %d comes again after seq %d", e.Seq, v.next-1)
		return
	case e.Seq > v.next:
		v.fail(v.next, NilID, "missing (the trail goes on at seq %d)", e.Seq)
		return
	}
	v.next++
	if len(e.Hash) == 0 {
		if v.prev == nil && v.legacy == e.Seq-1 {
			// Written before the audit chain existed: not verifiable.
			v.legacy++
			return
		}
		v.fail(e.Seq, e.ID, "has no hash")
		return
	}
	want, err := v.chain.Hash(v.prev, &e)
	if err != nil {
		v.fail(e.Seq, e.ID, "its data is not valid JSON: %v", err)
		return
	}
	if !hmac.Equal(want, e.Hash) {
		v.fail(e.Seq, e.ID, "its hash does not match its content and the hash before it (altered, moved, or chained without this key)")
		return
	}
	v.prev = e.Hash
}

// Finish checks the end of the trail against the saga row's head and
// returns the first break, or nil when the chain holds.
func (v *ChainVerifier) Finish() *ChainBreak {
	if v.broken != nil {
		return v.broken
	}
	last := v.next - 1
	switch {
	case last < v.head.Seq:
		v.fail(last+1, NilID, "missing: the saga row counts %d events, the trail ends at seq %d", v.head.Seq, last)
	case last > v.head.Seq:
		v.fail(v.head.Seq+1, NilID, "beyond the %d events the saga row counts", v.head.Seq)
	case !bytes.Equal(v.prev, v.head.Hash) && !(v.prev == nil && len(v.head.Hash) == 0):
		v.fail(last, NilID, "the saga row's last hash is not this event's hash")
	}
	return v.broken
}

// Legacy returns how many events at the start of the trail carry no hash
// because they were written before the audit chain existed.
func (v *ChainVerifier) Legacy() int64 { return v.legacy }

// Verify checks a saga's whole trail against its row's head; nil when the
// chain holds.
func (c *Chain) Verify(head ChainHead, events []Event) *ChainBreak {
	v := c.Verifier(head)
	for _, e := range events {
		v.Add(e)
	}
	return v.Finish()
}

// jsonText returns s as a JSON string.
func jsonText(s string) []byte {
	return appendCanonicalString(nil, strings.ToValidUTF8(s, "\uFFFD"))
}

// jsonBool returns b as JSON.
func jsonBool(b bool) []byte {
	if b {
		return []byte("true")
	}
	return []byte("false")
}

// requestMembers returns the reason and client address of req as event
// data members.
func requestMembers(req Requester) []member {
	var out []member
	if req.Reason != "" {
		out = append(out, member{key: "reason", value: jsonText(req.Reason)})
	}
	if req.Address != "" {
		out = append(out, member{key: "client_addr", value: jsonText(req.Address)})
	}
	return out
}

// SealCreate returns the events a store writes when it creates s, whose
// chain starts at head (its id and no event), sealed at time at: the given
// events, with SagaCreated attributed to the requester ctx carries (its
// actor, and the reason and client address in its data) and completed with
// what a replay of the saga needs (see Replay): transaction_id, user_id,
// idempotency_key, context (when it differs from the definition's) and the
// definition, redacted (Definition.Redacted: the trail holds no secret
// header value and no secret of a URL). The given events are not changed.
func (c *Chain) SealCreate(ctx context.Context, head ChainHead, s *Saga, events []Event, at time.Time) ([]Event, ChainHead, error) {
	drafts := make([]draft, len(events))
	req, hasReq := RequesterFrom(ctx)
	var definition []byte
	for i, e := range events {
		drafts[i].e = e
		if e.Type != EventSagaCreated {
			continue
		}
		if definition == nil {
			var err error
			if definition, err = json.Marshal(s.Definition.Redacted()); err != nil {
				return nil, head, fmt.Errorf("encode definition: %w", err)
			}
		}
		extra := []member{
			{key: "transaction_id", value: jsonText(s.TransactionID.String())},
			{key: "definition", value: definition},
		}
		if s.UserID != nil {
			extra = append(extra, member{key: "user_id", value: jsonText(s.UserID.String())})
		}
		if s.IdempotencyKey != "" {
			extra = append(extra, member{key: "idempotency_key", value: jsonText(s.IdempotencyKey)})
		}
		if len(s.Context) > 0 && !sameJSON(s.Context, s.Definition.Context) {
			extra = append(extra, member{key: "context", value: s.Context})
		}
		if hasReq {
			if drafts[i].e.Actor == "" {
				drafts[i].e.Actor = req.Actor
			}
			extra = append(extra, requestMembers(req)...)
		}
		drafts[i].extra = extra
	}
	return c.seal(head, drafts, at)
}

// SealTransition returns the events a store writes for t on a saga whose
// chain ends at head and whose pending request is p, sealed at time at:
// t's events completed with the values t writes to the rows they are
// about, where the event lacks them (see Replay: the output on
// StepCompleted and CompensationCompleted, the error and uncertainty on
// failures and retries, the saga's error on SagaCompensating and the end
// events, compensate_to on SagaCompensating and SagaRetried), and, when t
// carries out p (t.ClearControl is p's action), an
// OperatorRequestCarriedOut event closing p. t is not changed.
func (c *Chain) SealTransition(head ChainHead, t Transition, p PendingControl, at time.Time) ([]Event, ChainHead, error) {
	drafts := make([]draft, len(t.Events), len(t.Events)+1)
	ignored := false
	for i, e := range t.Events {
		drafts[i] = draft{e: e, extra: transitionMembers(&t, &e)}
		ignored = ignored || e.Type == EventControlIgnored
	}
	if t.ClearControl != ControlNone && t.ClearControl == p.Action {
		outcome := OutcomeCarriedOut
		if ignored {
			outcome = OutcomeIgnored
		}
		drafts = append(drafts, draft{
			e: Event{Type: EventOperatorRequestCarriedOut, InstanceID: t.Lease.Owner, Actor: p.Actor},
			extra: []member{
				{key: "action", value: jsonText(string(p.Action))},
				{key: "request_seq", value: strconv.AppendInt(nil, p.Seq, 10)},
				{key: "outcome", value: jsonText(outcome)},
			},
		})
	}
	return c.seal(head, drafts, at)
}

// transitionMembers returns the members the replay needs that t gives to
// the rows of e's subject.
func transitionMembers(t *Transition, e *Event) []member {
	switch e.Type {
	case EventStepStarted, EventStepCompleted, EventStepFailed, EventStepRetrying, EventStepSkipped, EventCallWithdrawn:
		u, ok := stepUpdate(t, e.StepIndex)
		if !ok {
			return nil
		}
		var m []member
		switch e.Type {
		case EventStepCompleted:
			if u.Output != nil {
				m = append(m, member{key: "output", value: u.Output})
			}
		case EventStepFailed, EventStepRetrying:
			m = append(m, member{key: "error", value: jsonText(u.Error)}, member{key: "uncertain", value: jsonBool(u.Uncertain)})
		}
		// The step's own uncertainty, which the engine's uncertain (that
		// of the attempt) need not be: an engine may keep a step uncertain
		// once any attempt was. Written where the replay cannot infer it.
		switch {
		case e.Type == EventCallWithdrawn:
			m = append(m, member{key: "step_uncertain", value: jsonBool(u.Uncertain)})
		case u.Uncertain:
			m = append(m, member{key: "step_uncertain", value: jsonBool(true), unless: "uncertain"})
		}
		return m
	case EventCompensationCompleted, EventCompensationFailed, EventCompensationRetrying:
		u, ok := compensationUpdate(t, e.StepIndex)
		switch {
		case !ok:
			return nil
		case e.Type == EventCompensationCompleted && u.Output != nil:
			return []member{{key: "output", value: u.Output}}
		case e.Type == EventCompensationCompleted:
			return nil
		}
		return []member{{key: "error", value: jsonText(u.Error)}}
	case EventSagaCompensating:
		return []member{{key: "error", value: jsonText(t.Error)}, {key: "compensate_to", value: jsonText(string(t.CompensateTo))}}
	case EventSagaCompensated, EventSagaCancelled, EventSagaTimedOut, EventSagaFailed:
		if t.Error != "" {
			return []member{{key: "error", value: jsonText(t.Error)}}
		}
	case EventSagaRetried:
		return []member{{key: "compensate_to", value: jsonText(string(t.CompensateTo))}}
	}
	return nil
}

// stepUpdate returns t's last update of the step at index.
func stepUpdate(t *Transition, index *int) (StepUpdate, bool) {
	if index == nil {
		return StepUpdate{}, false
	}
	for k := len(t.Steps) - 1; k >= 0; k-- {
		if t.Steps[k].Index == *index {
			return t.Steps[k], true
		}
	}
	return StepUpdate{}, false
}

// compensationUpdate returns t's last update of the compensation of the
// step at index.
func compensationUpdate(t *Transition, index *int) (CompensationUpdate, bool) {
	if index == nil {
		return CompensationUpdate{}, false
	}
	for k := len(t.Compensations) - 1; k >= 0; k-- {
		if t.Compensations[k].StepIndex == *index {
			return t.Compensations[k], true
		}
	}
	return CompensationUpdate{}, false
}

// SealControl returns the events a store writes when it records operator
// action a on a saga whose chain ends at head and whose pending request is
// p, sealed at time at: an OperatorRequestSuperseded event when p is
// replaced, then the OperatorRequested event, attributed to the requester
// ctx carries.
func (c *Chain) SealControl(ctx context.Context, head ChainHead, a ControlAction, p PendingControl, at time.Time) ([]Event, ChainHead, error) {
	req, _ := RequesterFrom(ctx)
	var drafts []draft
	if p.Action != ControlNone {
		drafts = append(drafts, draft{
			e: Event{Type: EventOperatorRequestSuperseded, InstanceID: req.Instance, Actor: req.Actor},
			extra: []member{
				{key: "action", value: jsonText(string(p.Action))},
				{key: "request_seq", value: strconv.AppendInt(nil, p.Seq, 10)},
				{key: "requested_by", value: jsonText(p.Actor)},
				{key: "superseded_by", value: jsonText(string(a))},
			},
		})
	}
	drafts = append(drafts, draft{
		e:     Event{Type: EventOperatorRequested, InstanceID: req.Instance, Actor: req.Actor},
		extra: append([]member{{key: "action", value: jsonText(string(a))}}, requestMembers(req)...),
	})
	return c.seal(head, drafts, at)
}

// SealLegalHold returns the event a store writes when it sets (hold) or
// lifts the legal hold of a saga whose chain ends at head, sealed at time
// at and attributed to the requester ctx carries.
func (c *Chain) SealLegalHold(ctx context.Context, head ChainHead, hold bool, at time.Time) ([]Event, ChainHead, error) {
	req, _ := RequesterFrom(ctx)
	return c.seal(head, []draft{{
		e:     Event{Type: EventLegalHoldChanged, InstanceID: req.Instance, Actor: req.Actor},
		extra: append([]member{{key: "legal_hold", value: jsonBool(hold)}}, requestMembers(req)...),
	}}, at)
}

// sameJSON reports whether a and b are the same JSON value (empty counts as
// null); invalid JSON is never the same.
func sameJSON(a, b []byte) bool {
	ca, errA := CanonicalJSON(a)
	cb, errB := CanonicalJSON(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

// Deletion is the tombstone a store keeps of a saga it deleted: which saga,
// how it had ended, the head of its audit chain, when it was deleted, by
// which rule, and at whose request (none for the retention job).
type Deletion struct {
	SagaID      ID
	Name        string
	Status      SagaStatus
	EventSeq    int64
	LastHash    []byte
	CompletedAt *time.Time
	DeletedAt   time.Time
	Rule        string
	Actor       string
	Reason      string
	Address     string
}

// RetentionRule names, for tombstones, the retention rule under which
// cleanup deletes sagas that ended in status more than age ago.
func RetentionRule(status SagaStatus, age time.Duration) string {
	return "retention: " + string(status) + " more than " + age.String() + " ago"
}

// NewDeletion returns the tombstone of s, whose chain ends with the hash
// lastHash, deleted at at under the retention rule of age for its status,
// at the request ctx carries, if any.
func NewDeletion(ctx context.Context, s *Saga, lastHash []byte, age time.Duration, at time.Time) Deletion {
	d := Deletion{
		SagaID: s.ID, Name: s.Name, Status: s.Status, EventSeq: s.EventSeq,
		LastHash: bytes.Clone(lastHash), CompletedAt: clonePtr(s.CompletedAt),
		DeletedAt: at, Rule: RetentionRule(s.Status, age),
	}
	if req, ok := RequesterFrom(ctx); ok {
		d.Actor, d.Reason, d.Address = req.Actor, req.Reason, req.Address
	}
	return d
}

// ChainQuery selects sagas for AuditStore.Chains.
type ChainQuery struct {
	After ID        // sagas with a greater id (the keyset position)
	Since time.Time // zero: all; else sagas updated at or after Since
	IDs   []ID      // nil: all; else only these
	Limit int       // at most this many sagas (<= 0: ChainBatchDefault)
}

// ChainBatchDefault is the number of sagas of one Chains call when the
// query gives none.
const ChainBatchDefault = 500

// EffectiveLimit returns q.Limit, or ChainBatchDefault.
func (q ChainQuery) EffectiveLimit() int {
	if q.Limit <= 0 {
		return ChainBatchDefault
	}
	return q.Limit
}

// AuditStore is implemented by stores whose audit trail can be read in
// bulk: every chain (for verification), a time range of events (export)
// and the tombstones of deleted sagas. Each method streams what it reads
// to its callbacks.
type AuditStore interface {
	// Chains reads the chains of up to q.EffectiveLimit() sagas matching q,
	// in ascending id order, from one consistent snapshot: for each saga
	// head(h), then event(e) for each of its events in seq order. It
	// returns how many sagas it read and the id of the last (the After of
	// the next batch). An error of a callback stops it and is returned.
	Chains(ctx context.Context, q ChainQuery, head func(ChainHead) error, event func(Event) error) (n int, last ID, err error)
	// ExportEvents calls fn with every event created in [from, to), by
	// saga id and then seq, with the hash of the event before it in its
	// saga (nil for the first).
	ExportEvents(ctx context.Context, from, to time.Time, fn func(e Event, prev []byte) error) error
	// Deletions calls fn with the tombstones of sagas deleted in [from,
	// to), oldest first.
	Deletions(ctx context.Context, from, to time.Time, fn func(Deletion) error) error
}
