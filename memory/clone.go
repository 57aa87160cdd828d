package memory

import (
	"bytes"
	"encoding/json"
	"maps"

	saga "github.com/tracseq/transaction-service"
)

// The store keeps its own copies of everything: callers may change what
// they passed in or got back without changing what is stored.

// cloneSaga returns a deep copy of src, with its steps when withSteps is
// set, and Durable false.
func cloneSaga(src *saga.Saga, withSteps bool) *saga.Saga {
	dst := *src
	dst.UserID = clonePtr(src.UserID)
	dst.Context = cloneRaw(src.Context)
	dst.Definition = cloneDefinition(src.Definition)
	dst.Deadline = clonePtr(src.Deadline)
	dst.LeaseExpiresAt = clonePtr(src.LeaseExpiresAt)
	dst.NextRunAt = clonePtr(src.NextRunAt)
	dst.StartedAt = clonePtr(src.StartedAt)
	dst.CompletedAt = clonePtr(src.CompletedAt)
	dst.Durable = false
	dst.Steps = nil
	if withSteps && src.Steps != nil {
		dst.Steps = make([]saga.Step, len(src.Steps))
		for i := range src.Steps {
			dst.Steps[i] = cloneStep(src.Steps[i])
		}
	}
	return &dst
}

func cloneStep(src saga.Step) saga.Step {
	dst := src
	dst.Input = cloneRaw(src.Input)
	dst.Output = cloneRaw(src.Output)
	dst.StartedAt = clonePtr(src.StartedAt)
	dst.CompletedAt = clonePtr(src.CompletedAt)
	if src.Compensation != nil {
		c := cloneCompensation(*src.Compensation)
		dst.Compensation = &c
	}
	return dst
}

func cloneCompensation(src saga.Compensation) saga.Compensation {
	dst := src
	dst.Output = cloneRaw(src.Output)
	dst.StartedAt = clonePtr(src.StartedAt)
	dst.CompletedAt = clonePtr(src.CompletedAt)
	return dst
}

func cloneDefinition(src saga.Definition) saga.Definition {
	dst := src
	dst.TransactionID = clonePtr(src.TransactionID)
	dst.UserID = clonePtr(src.UserID)
	dst.Context = cloneRaw(src.Context)
	if src.Steps != nil {
		dst.Steps = make([]saga.StepDefinition, len(src.Steps))
		for i, st := range src.Steps {
			st.Action = cloneRequest(st.Action)
			if st.Compensation != nil {
				c := cloneRequest(*st.Compensation)
				st.Compensation = &c
			}
			st.Retry = clonePtr(st.Retry)
			dst.Steps[i] = st
		}
	}
	return dst
}

func cloneRequest(src saga.Request) saga.Request {
	dst := src
	dst.Headers = maps.Clone(src.Headers)
	dst.Body = cloneRaw(src.Body)
	return dst
}

func cloneEvent(src saga.Event) saga.Event {
	dst := src
	dst.StepIndex = clonePtr(src.StepIndex)
	dst.Data = cloneRaw(src.Data)
	return dst
}

func cloneEvents(src []saga.Event) []saga.Event {
	if src == nil {
		return nil
	}
	dst := make([]saga.Event, len(src))
	for i, e := range src {
		dst[i] = cloneEvent(e)
	}
	return dst
}

func cloneCheckpoint(src saga.Checkpoint) saga.Checkpoint {
	dst := src
	dst.Context = cloneRaw(src.Context)
	return dst
}

func cloneCheckpoints(src []saga.Checkpoint) []saga.Checkpoint {
	if src == nil {
		return nil
	}
	dst := make([]saga.Checkpoint, len(src))
	for i, c := range src {
		dst[i] = cloneCheckpoint(c)
	}
	return dst
}

func cloneRaw(r json.RawMessage) json.RawMessage {
	return json.RawMessage(bytes.Clone(r))
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
