package engine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// object builds a small JSON object by appending to one buffer, for event
// data and checkpoints on the hot path (json.Marshal of a map costs a
// dozen allocations). Members must be added with their keys in sorted
// order, which is the order json.Marshal gives a map's keys; keys are
// plain ASCII words written as they are.
type object struct{ b []byte }

// newObject starts an object with room for size bytes.
func newObject(size int) object {
	b := make([]byte, 1, size)
	b[0] = '{'
	return object{b: b}
}

func (o *object) key(k string) {
	if len(o.b) > 1 {
		o.b = append(o.b, ',')
	}
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

// int adds an integer member.
func (o *object) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// str adds a string member.
func (o *object) str(k, v string) {
	o.key(k)
	o.b = saga.AppendJSONString(o.b, v)
}

// bool adds a boolean member.
func (o *object) bool(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// raw adds a member whose value is valid JSON already (compacted; empty as
// null).
func (o *object) raw(k string, v json.RawMessage) {
	o.key(k)
	o.b = appendCompact(o.b, v)
}

// done closes the object and returns it.
func (o *object) done() json.RawMessage {
	return append(o.b, '}')
}

// appendCompact appends JSON v without insignificant spaces: as it is
// when it holds no white space (the values the engine encodes are valid
// JSON where they come from: Definition.Validate, participant.Result, the
// store), else compacted; empty or invalid as null.
func appendCompact(dst []byte, v json.RawMessage) []byte {
	if len(v) == 0 {
		return append(dst, "null"...)
	}
	if !bytes.ContainsAny(v, " \t\r\n") {
		return append(dst, v...)
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		return append(dst, "null"...)
	}
	return buf.Bytes()
}

// outcomeData is the data of the event recording a call's outcome.
type outcomeData struct {
	c       *call
	res     *participant.Result
	backoff time.Duration // before the next attempt; < 0: none
	dropped int           // bytes of a successful answer not kept (the output budget)
}

// json encodes d with its members in key order: attempt, backoff_ms,
// duration_ms, error, kind, output_dropped_bytes, status_code, uncertain
// (as they apply).
func (d outcomeData) json() json.RawMessage {
	failed := d.res.Outcome != participant.OutcomeSuccess
	size := 96
	if failed {
		size += 32 + len(d.res.Error)
	}
	o := newObject(size)
	o.int("attempt", int64(d.c.Attempt))
	if d.backoff >= 0 {
		o.int("backoff_ms", d.backoff.Milliseconds())
	}
	o.int("duration_ms", d.res.Duration.Milliseconds())
	if failed {
		o.str("error", d.res.Error)
	}
	o.str("kind", string(d.c.Kind))
	if d.dropped > 0 {
		o.int("output_dropped_bytes", int64(d.dropped))
	}
	if d.res.StatusCode != 0 {
		o.int("status_code", int64(d.res.StatusCode))
	}
	if failed {
		o.bool("uncertain", d.res.Uncertain)
	}
	return o.done()
}

// startedData is the data of a StepStarted or CompensationStarted event.
func startedData(attempt int, kind string) json.RawMessage {
	o := newObject(40)
	o.int("attempt", int64(attempt))
	o.str("kind", kind)
	return o.done()
}

// checkpointOutputs reads the outputs of a checkpoint's context.
func checkpointOutputs(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var cp struct {
		Outputs map[string]json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &cp); err != nil {
		return nil, err
	}
	return cp.Outputs, nil
}

// jsonSame reports whether two JSON values are equal once compacted (a
// store may give back JSON with other spacing, or keys reordered for
// jsonb: then they are compared decoded).
func jsonSame(a, b json.RawMessage) bool {
	ca, cb := appendCompact(nil, a), appendCompact(nil, b)
	if bytes.Equal(ca, cb) {
		return true
	}
	var va, vb any
	if json.Unmarshal(ca, &va) != nil || json.Unmarshal(cb, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// cmpRaw returns raw, or JSON null when it is empty.
func cmpRaw(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
