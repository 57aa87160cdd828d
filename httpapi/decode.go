package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	saga "github.com/tracseq/transaction-service"
)

// decodeDefinition reads the body of a submit strictly: JSON media type, at
// most maxBodyBytes, no unknown fields, one JSON value. Errors name the
// field where the decoder can tell it.
func (s *Server) decodeDefinition(w http.ResponseWriter, r *http.Request) (saga.Definition, error) {
	var def saga.Definition
	if err := checkContentType(r); err != nil {
		return def, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return def, saga.Errorf(codeTooLarge, "", "the request body must be at most %d bytes", tooLarge.Limit)
		}
		if r.Context().Err() != nil {
			return def, fmt.Errorf("read request body: %w", r.Context().Err())
		}
		return def, saga.Errorf(saga.ECodeInvalid, "", "the request body could not be read")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return def, saga.Errorf(saga.ECodeInvalid, "", "the request body must hold a saga definition (a JSON object); it is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&def); err != nil {
		return def, decodeError(err, body)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return def, saga.Errorf(saga.ECodeInvalid, "",
			"the request body must hold a single JSON value; more follows it at byte %d", dec.InputOffset())
	}
	if bytes.Equal(bytes.TrimSpace(def.Context), []byte("null")) {
		def.Context = nil
	}
	return def, nil
}

// checkContentType requires a JSON body (media type parameters such as
// charset are allowed).
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != contentTypeJSON {
		return saga.Errorf(codeUnsupportedMedia, "", "Content-Type must be %s (got %q)", contentTypeJSON, ct)
	}
	return nil
}

// decodeError explains a decoding failure of a definition.
func decodeError(err error, body []byte) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return saga.Errorf(saga.ECodeInvalid, "", "the request body is not valid JSON: %s (at byte %d)",
			strings.TrimPrefix(syntax.Error(), "json: "), syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return saga.Errorf(saga.ECodeInvalid, "", "the request body is not valid JSON: it ends in the middle of a value")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return saga.Errorf(saga.ECodeInvalid, "", "the request body must be a JSON object, not %s", article(typ.Value))
		}
		return saga.Errorf(saga.ECodeInvalid, typ.Field, "must be %s, not %s", article(jsonKind(typ.Type)), article(typ.Value))
	}
	// encoding/json reports unknown fields and failed UnmarshalText calls
	// (the UUID fields) without a type to tell them by.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unq, uerr := strconv.Unquote(name); uerr == nil {
			name = unq
		}
		return saga.Errorf(saga.ECodeInvalid, name, "unknown field %q", name)
	}
	var ids struct {
		TransactionID *string `json:"transaction_id"`
		UserID        *string `json:"user_id"`
	}
	if json.Unmarshal(body, &ids) == nil {
		for _, f := range []struct {
			name  string
			value *string
		}{{"transaction_id", ids.TransactionID}, {"user_id", ids.UserID}} {
			if f.value == nil {
				continue
			}
			if _, perr := saga.ParseID(*f.value); perr != nil {
				return saga.Errorf(saga.ECodeInvalid, f.name, "must be a UUID such as 0190f1c2-7a3b-7c4d-8e5f-0123456789ab (got %q)", *f.value)
			}
		}
	}
	return saga.Errorf(saga.ECodeInvalid, "", "the request body is not a valid saga definition: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) ||
		reflect.PointerTo(t).Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "value"
}

// article prefixes a JSON kind with its indefinite article.
func article(kind string) string {
	if kind == "bool" {
		kind = "boolean"
	}
	switch {
	case kind == "":
		return "a value"
	case strings.HasPrefix(kind, "number "):
		// encoding/json reports "number 1.5" for a number that does not fit.
		return "the " + kind
	case strings.IndexByte("aeiou", kind[0]) >= 0:
		return "an " + kind
	}
	return "a " + kind
}
