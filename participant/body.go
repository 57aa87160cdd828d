package participant

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Header values shared by every call; net/http only reads them.
var (
	acceptJSON      = []string{"application/json"}
	contentTypeJSON = []string{"application/json"}
)

// appendCallBody appends the JSON body of call to dst:
//
//	{"saga_id":…,"transaction_id":…,"step":…,"step_index":…,"kind":…,
//	 "attempt":…,"input":…,"context":…,"outputs":{…}}
//
// It writes what json.Marshal would write for these fields (raw values
// compacted, output names in sorted order, empty raw values as null) with
// one allocation for the usual body. The raw values are valid JSON where
// they come from (Definition.Validate, Result.Output, the store), so one
// without white space is copied as it is; one with white space is
// compacted, and an error means it is not valid JSON.
func appendCallBody(dst []byte, call Call) ([]byte, error) {
	size := 192 + len(call.StepName) + len(call.Request.Body) + len(call.Context)
	for name, out := range call.Outputs {
		size += len(name) + len(out) + 4
	}
	buf := bytes.NewBuffer(slices.Grow(dst, size))
	b := buf.AvailableBuffer()
	b = append(b, `{"saga_id":"`...)
	b = append(b, call.SagaID.String()...)
	b = append(b, `","transaction_id":"`...)
	b = append(b, call.TransactionID.String()...)
	b = append(b, `","step":`...)
	b = appendString(b, call.StepName)
	b = append(b, `,"step_index":`...)
	b = strconv.AppendInt(b, int64(call.StepIndex), 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(call.Kind))
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(call.Attempt), 10)
	b = append(b, `,"input":`...)
	buf.Write(b)
	if err := compactInto(buf, nullIfEmpty(call.Request.Body)); err != nil {
		return nil, err
	}
	buf.WriteString(`,"context":`)
	if err := compactInto(buf, nullIfEmpty(call.Context)); err != nil {
		return nil, err
	}
	buf.WriteString(`,"outputs":{`)
	names := make([]string, 0, len(call.Outputs))
	for name := range call.Outputs {
		names = append(names, name)
	}
	slices.Sort(names)
	for k, name := range names {
		b = buf.AvailableBuffer()
		if k > 0 {
			b = append(b, ',')
		}
		b = appendString(b, name)
		b = append(b, ':')
		buf.Write(b)
		if err := compactInto(buf, nullIfEmpty(call.Outputs[name])); err != nil {
			return nil, err
		}
	}
	buf.WriteString("}}")
	return buf.Bytes(), nil
}

// appendString appends s as a JSON string. Plain ASCII is copied as is;
// anything else is escaped by encoding/json.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// compactInto writes raw to buf without insignificant white space.
func compactInto(buf *bytes.Buffer, raw json.RawMessage) error {
	if !bytes.ContainsAny(raw, " \t\r\n") {
		buf.Write(raw)
		return nil
	}
	return json.Compact(buf, raw)
}
