package dtmapi

import (
	"encoding/json"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// DTM's status names: of a transaction (submitted, aborting, succeed,
// failed) and of a branch (prepared, succeed, failed).
const (
	StatusPrepared  = "prepared"
	StatusSubmitted = "submitted"
	StatusSucceed   = "succeed"
	StatusFailed    = "failed"
	StatusAborting  = "aborting"
)

// TransStatus returns DTM's name of a saga status. A saga that runs or
// waits is submitted, one that compensates is aborting; Completed is
// succeed, and every other end state is failed: rolled back (Compensated,
// Cancelled, TimedOut) or stopped with a compensation that could not
// finish (Failed, whose rollback_reason says which), as a DTM transaction
// stopped with forceStop is.
func TransStatus(s saga.SagaStatus) string {
	switch s {
	case saga.SagaStatusCompleted:
		return StatusSucceed
	case saga.SagaStatusCompensating:
		return StatusAborting
	case saga.SagaStatusCompensated, saga.SagaStatusCancelled, saga.SagaStatusTimedOut, saga.SagaStatusFailed:
		return StatusFailed
	}
	return StatusSubmitted
}

// actionStatus returns DTM's status of a step's action branch.
func actionStatus(s saga.StepStatus) string {
	switch s {
	case saga.StepStatusCompleted:
		return StatusSucceed
	case saga.StepStatusFailed:
		return StatusFailed
	}
	return StatusPrepared
}

// compensateStatus returns DTM's status of a step's compensate branch.
func compensateStatus(c *saga.Compensation) string {
	if c != nil && c.Status == saga.CompensationStatusCompleted {
		return StatusSucceed
	}
	return StatusPrepared
}

// TransJSON is a transaction as query and all return it: DTM's
// TransGlobalStore, less its numeric id (saga_id names the saga instead)
// and the fields only DTM's own machinery reads.
type TransJSON struct {
	SagaID         string            `json:"saga_id"`
	CreateTime     *time.Time        `json:"create_time"`
	UpdateTime     *time.Time        `json:"update_time"`
	Gid            string            `json:"gid"`
	TransType      string            `json:"trans_type"`
	Status         string            `json:"status"`
	Protocol       string            `json:"protocol"`
	FinishTime     *time.Time        `json:"finish_time,omitempty"`
	RollbackTime   *time.Time        `json:"rollback_time,omitempty"`
	RollbackReason string            `json:"rollback_reason,omitempty"`
	Options        string            `json:"options,omitempty"`
	CustomData     string            `json:"custom_data,omitempty"`
	NextCronTime   *time.Time        `json:"next_cron_time,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	WaitResult     bool              `json:"wait_result,omitempty"`
	TimeoutToFail  int64             `json:"timeout_to_fail,omitempty"`
	RequestTimeout int64             `json:"request_timeout,omitempty"`
	RetryInterval  int64             `json:"retry_interval,omitempty"`
	BranchHeaders  map[string]string `json:"branch_headers,omitempty"`
	Concurrent     bool              `json:"concurrent"`
	RetryLimit     int64             `json:"retry_limit,omitempty"`
}

// BranchJSON is one branch as query returns it: DTM's TransBranchStore
// less its numeric id. BinData is the payload (base64 in JSON, as DTM
// encodes its []byte).
type BranchJSON struct {
	CreateTime *time.Time `json:"create_time"`
	UpdateTime *time.Time `json:"update_time"`
	Gid        string     `json:"gid"`
	URL        string     `json:"url"`
	BinData    []byte     `json:"bin_data,omitempty"`
	BranchID   string     `json:"branch_id"`
	Op         string     `json:"op"`
	Status     string     `json:"status"`
	FinishTime *time.Time `json:"finish_time,omitempty"`
}

// QueryJSON is the answer of GET query.
type QueryJSON struct {
	Transaction *TransJSON   `json:"transaction"`
	Branches    []BranchJSON `json:"branches"`
}

// AllJSON is the answer of GET all. NextPosition is "" on the last page.
type AllJSON struct {
	Transactions []TransJSON `json:"transactions"`
	NextPosition string      `json:"next_position"`
}

// gidOf returns the gid of a DTM saga, or "" when s is not one.
func gidOf(s *saga.Saga) string {
	if s.Name != SagaName || len(s.IdempotencyKey) <= len(KeyPrefix) || s.IdempotencyKey[:len(KeyPrefix)] != KeyPrefix {
		return ""
	}
	return s.IdempotencyKey[len(KeyPrefix):]
}

// newTransJSON describes a DTM saga as DTM describes a transaction.
func newTransJSON(s *saga.Saga) TransJSON {
	var c dtmContext
	_ = json.Unmarshal(s.Context, &c)
	var o transOptions
	_ = json.Unmarshal([]byte(c.DTM.Options), &o)
	t := TransJSON{
		SagaID:         s.ID.String(),
		CreateTime:     utc(&s.CreatedAt),
		UpdateTime:     utc(&s.UpdatedAt),
		Gid:            gidOf(s),
		TransType:      "saga",
		Status:         TransStatus(s.Status),
		Protocol:       "http",
		Options:        c.DTM.Options,
		CustomData:     c.DTM.CustomData,
		NextCronTime:   utc(s.NextRunAt),
		Owner:          s.OwnerID,
		WaitResult:     o.WaitResult,
		TimeoutToFail:  o.TimeoutToFail,
		RequestTimeout: o.RequestTimeout,
		RetryInterval:  o.RetryInterval,
		BranchHeaders:  o.BranchHeaders,
		Concurrent:     o.Concurrent,
		RetryLimit:     o.RetryLimit,
	}
	switch t.Status {
	case StatusSucceed:
		t.FinishTime = utc(s.CompletedAt)
	case StatusFailed:
		t.RollbackTime = utc(s.CompletedAt)
	}
	if s.Status != saga.SagaStatusCompleted {
		t.RollbackReason = s.Error
	}
	return t
}

// newBranches lists a DTM saga's branches as DTM does: for each step, its
// compensate branch and then its action branch.
func newBranches(s *saga.Saga) []BranchJSON {
	gid := gidOf(s)
	out := make([]BranchJSON, 0, 2*len(s.Definition.Steps))
	for i, def := range s.Definition.Steps {
		var st saga.Step
		if i < len(s.Steps) {
			st = s.Steps[i]
		}
		id := participant.DTMBranchID(i)
		created := utc(&s.CreatedAt)
		comp := BranchJSON{CreateTime: created, UpdateTime: created, Gid: gid, BinData: def.Action.Body,
			BranchID: id, Op: participant.DTMOpCompensate, Status: compensateStatus(st.Compensation)}
		if def.Compensation != nil {
			comp.URL = withoutGID(def.Compensation.URL, gid)
		}
		if c := st.Compensation; c != nil {
			comp.UpdateTime = latest(created, c.StartedAt, c.CompletedAt)
			comp.FinishTime = utc(c.CompletedAt)
		}
		act := BranchJSON{CreateTime: created, UpdateTime: latest(created, st.StartedAt, st.CompletedAt), Gid: gid,
			URL: withoutGID(def.Action.URL, gid), BinData: def.Action.Body, BranchID: id,
			Op: participant.DTMOpAction, Status: actionStatus(st.Status), FinishTime: utc(st.CompletedAt)}
		out = append(out, comp, act)
	}
	return out
}

// latest returns the latest of the times given, in UTC.
func latest(first *time.Time, more ...*time.Time) *time.Time {
	best := first
	for _, t := range more {
		if t != nil && (best == nil || t.After(*best)) {
			best = t
		}
	}
	return utc(best)
}

func utc(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
