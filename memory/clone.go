package memory

import (
	"bytes"
	"encoding/json"

	saga "github.com/tracseq/transaction-service"
)

// The store keeps its own copies of everything: callers may change what
// they passed in or got back without changing what is stored.

// cloneSaga returns a deep copy of src, with its steps when withSteps is
// set, and Durable false.
func cloneSaga(src *saga.Saga, withSteps bool) *saga.Saga {
	if !withSteps {
		// Copy the row alone: do not pay for steps that are dropped.
		row := *src
		row.Steps = nil
		src = &row
	}
	dst := src.Clone()
	dst.Durable = false
	return dst
}

func cloneEvent(src saga.Event) saga.Event { return src.Clone() }

func cloneEvents(src []saga.Event) []saga.Event {
	if src == nil {
		return nil
	}
	dst := make([]saga.Event, len(src))
	for i, e := range src {
		dst[i] = e.Clone()
	}
	return dst
}

func cloneCheckpoint(src saga.Checkpoint) saga.Checkpoint { return src.Clone() }

func cloneCheckpoints(src []saga.Checkpoint) []saga.Checkpoint {
	if src == nil {
		return nil
	}
	dst := make([]saga.Checkpoint, len(src))
	for i, c := range src {
		dst[i] = c.Clone()
	}
	return dst
}

func cloneRaw(r json.RawMessage) json.RawMessage {
	return json.RawMessage(bytes.Clone(r))
}
