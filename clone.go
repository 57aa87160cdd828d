package saga

import (
	"bytes"
	"encoding/json"
	"maps"
)

// Deep copies. Stores keep copies of what they are given and hand out
// copies of what they hold, so that callers can change either freely.

// Clone returns a copy of s that shares no memory with it, steps and
// compensations included.
func (s *Saga) Clone() *Saga {
	c := *s
	c.UserID = clonePtr(s.UserID)
	c.Context = cloneRaw(s.Context)
	c.Definition = s.Definition.Clone()
	c.Deadline = clonePtr(s.Deadline)
	c.LeaseExpiresAt = clonePtr(s.LeaseExpiresAt)
	c.NextRunAt = clonePtr(s.NextRunAt)
	c.StartedAt = clonePtr(s.StartedAt)
	c.CompletedAt = clonePtr(s.CompletedAt)
	if s.Steps != nil {
		c.Steps = make([]Step, len(s.Steps))
		for i := range s.Steps {
			c.Steps[i] = s.Steps[i].Clone()
		}
	}
	return &c
}

// Clone returns a copy of st that shares no memory with it.
func (st Step) Clone() Step {
	c := st
	c.Input = cloneRaw(st.Input)
	c.Output = cloneRaw(st.Output)
	c.StartedAt = clonePtr(st.StartedAt)
	c.CompletedAt = clonePtr(st.CompletedAt)
	if st.Compensation != nil {
		comp := st.Compensation.Clone()
		c.Compensation = &comp
	}
	return c
}

// Clone returns a copy of c that shares no memory with it.
func (c Compensation) Clone() Compensation {
	out := c
	out.Output = cloneRaw(c.Output)
	out.StartedAt = clonePtr(c.StartedAt)
	out.CompletedAt = clonePtr(c.CompletedAt)
	return out
}

// Clone returns a copy of d that shares no memory with it.
func (d Definition) Clone() Definition {
	c := d
	c.TransactionID = clonePtr(d.TransactionID)
	c.UserID = clonePtr(d.UserID)
	c.Context = cloneRaw(d.Context)
	if d.SecretHeaders != nil {
		c.SecretHeaders = append(make([]string, 0, len(d.SecretHeaders)), d.SecretHeaders...)
	}
	if d.Steps != nil {
		c.Steps = make([]StepDefinition, len(d.Steps))
		for i, st := range d.Steps {
			st.Action = st.Action.Clone()
			if st.Compensation != nil {
				comp := st.Compensation.Clone()
				st.Compensation = &comp
			}
			st.Retry = clonePtr(st.Retry)
			if st.DependsOn != nil {
				// An empty, non-nil list means "no dependencies" in a graph:
				// keep it non-nil.
				st.DependsOn = append(make([]string, 0, len(st.DependsOn)), st.DependsOn...)
			}
			c.Steps[i] = st
		}
	}
	return c
}

// Clone returns a copy of r that shares no memory with it.
func (r Request) Clone() Request {
	c := r
	c.Headers = maps.Clone(r.Headers)
	c.Body = cloneRaw(r.Body)
	c.Retry = clonePtr(r.Retry)
	return c
}

// Clone returns a copy of e that shares no memory with it.
func (e Event) Clone() Event {
	c := e
	c.StepIndex = clonePtr(e.StepIndex)
	c.Data = cloneRaw(e.Data)
	c.Hash = cloneBytes(e.Hash)
	return c
}

// Clone returns a copy of d that shares no memory with it.
func (d Deletion) Clone() Deletion {
	c := d
	c.LastHash = cloneBytes(d.LastHash)
	c.CompletedAt = clonePtr(d.CompletedAt)
	return c
}

// Clone returns a copy of c that shares no memory with it.
func (c Checkpoint) Clone() Checkpoint {
	out := c
	out.Context = cloneRaw(c.Context)
	return out
}

// cloneRaw copies raw JSON; nil stays nil.
func cloneRaw(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	return json.RawMessage(bytes.Clone(raw))
}

// cloneBytes copies b; nil stays nil.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
