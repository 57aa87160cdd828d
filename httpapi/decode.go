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
	"slices"
	"strconv"
	"strings"

	saga "github.com/tracseq/transaction-service"
)

// decodeDefinition reads the body of a submit strictly: JSON media type, at
// most maxBodyBytes, then DecodeDefinition.
func (s *Server) decodeDefinition(w http.ResponseWriter, r *http.Request) (saga.Definition, error) {
	if err := checkContentType(r); err != nil {
		return saga.Definition{}, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return saga.Definition{}, saga.Errorf(codeTooLarge, "", "the request body must be at most %d bytes", tooLarge.Limit)
		}
		if r.Context().Err() != nil {
			return saga.Definition{}, fmt.Errorf("read request body: %w", r.Context().Err())
		}
		return saga.Definition{}, saga.Errorf(saga.ECodeInvalid, "", "the request body could not be read")
	}
	return DecodeDefinition(body)
}

// DecodeDefinition decodes a saga definition strictly: one JSON value,
// an object, every part of it storable (no NUL, no invalid UTF-8, no lone
// surrogate, no number out of range: see saga.CheckStorableJSON), no
// unknown field (each one is reported with its path and, when a known
// field is close, a suggestion), every field of its type. It does not call
// Validate. Errors are a *saga.ValidationError or a *saga.Error of code
// invalid naming the field where it can be told; the CLI and the API use
// it alike.
func DecodeDefinition(body []byte) (saga.Definition, error) {
	// A good body is read once by the strict decode and once for what the
	// decode does not check; only a bad one is gone over again, check by
	// check, to say what is wrong with it.
	def, err := decodeStrict(body)
	if err != nil {
		return saga.Definition{}, explainDefinition(body, err)
	}
	// Go's decoder turned invalid UTF-8 and lone surrogates into U+FFFD
	// without a word: the body itself is checked.
	if p := saga.CheckStorableJSON(body); p != nil {
		return saga.Definition{}, saga.Errorf(saga.ECodeInvalid, p.Field(""), "%s", p.Message)
	}
	if bytes.Equal(bytes.TrimSpace(def.Context), []byte("null")) {
		def.Context = nil
	}
	return def, nil
}

// errTrailing is decodeStrict's error for a body with more after its value.
var errTrailing = errors.New("data after the JSON value")

// decodeStrict decodes body, one JSON value and nothing after it, into a
// definition, failing on the first unknown field.
func decodeStrict(body []byte) (saga.Definition, error) {
	var def saga.Definition
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&def); err != nil {
		return def, err
	}
	if len(bytes.TrimSpace(body[dec.InputOffset():])) != 0 {
		return def, errTrailing
	}
	return def, nil
}

// explainDefinition says what is wrong with a body decodeStrict failed on
// with err, in the order of the checks a client should fix first: empty,
// not JSON, not storable, unknown fields (all of them, where the decode
// names the first only), then the decode's own error.
func explainDefinition(body []byte, err error) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return saga.Errorf(saga.ECodeInvalid, "", "the request body must hold a saga definition (a JSON object); it is empty")
	}
	if !json.Valid(body) {
		return syntaxError(body)
	}
	if p := saga.CheckStorableJSON(body); p != nil {
		return saga.Errorf(saga.ECodeInvalid, p.Field(""), "%s", p.Message)
	}
	if uerr := unknownFields(body); uerr != nil {
		return uerr
	}
	return decodeError(err, body)
}

// syntaxError explains why body is not one valid JSON value.
func syntaxError(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return decodeError(err, body)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return saga.Errorf(saga.ECodeInvalid, "",
			"the request body must hold a single JSON value; more follows it at byte %d", dec.InputOffset())
	}
	return saga.Errorf(saga.ECodeInvalid, "", "the request body is not valid JSON")
}

// unknownFields reports every member of body that no field of a definition
// takes, with its path (steps[0].compensaton) and the closest known name.
func unknownFields(body []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil // the typed decode reports it
	}
	var ve saga.ValidationError
	walkUnknown(&ve, "", reflect.TypeFor[saga.Definition](), v)
	if len(ve.Problems) == 0 {
		return nil
	}
	return &ve
}

// walkUnknown checks v, decoded JSON, against the Go type t it will be
// decoded into. Values of the wrong type are left to the typed decode.
func walkUnknown(ve *saga.ValidationError, path string, t reflect.Type, v any) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[json.RawMessage]() {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := memberTypes(t)
		names := make([]string, 0, len(obj))
		for name := range obj {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			ft, ok := fields[name]
			if !ok {
				ft, ok = fieldFold(fields, name)
			}
			field := joinPath(path, name)
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				ve.Problems = append(ve.Problems, saga.Errorf(saga.ECodeInvalid, field,
					"unknown field %s%s", strconv.QuoteToASCII(name), saga.DidYouMean(name, known)))
				continue
			}
			walkUnknown(ve, field, ft, obj[name])
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			walkUnknown(ve, path+"["+strconv.Itoa(i)+"]", t.Elem(), e)
		}
	}
}

// memberTypes returns the JSON names of a struct's fields and their types.
func memberTypes(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// fieldFold finds a field the way encoding/json does when no name matches
// exactly: without regard to case.
func fieldFold(fields map[string]reflect.Type, name string) (reflect.Type, bool) {
	for k, t := range fields {
		if strings.EqualFold(k, name) {
			return t, true
		}
	}
	return nil, false
}

// joinPath appends a member name to a JSON path.
func joinPath(path, name string) string {
	if !plainName(name) {
		return path + "[" + strconv.QuoteToASCII(name) + "]"
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

// plainName reports whether a member name can follow a dot in a path.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
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
