package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// timeLayout is how times are stored: UTC, microseconds, fixed width, so
// that text order is time order (and SQLite's date functions read it).
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Bounds of the keyset and window queries when a filter is absent: every
// stored time sorts between them.
const (
	timeMin = "0000-01-01T00:00:00.000000Z"
	timeMax = "9999-12-31T23:59:59.999999Z"
)

// maxIDText is the largest UUID: the keyset cursor of the first page.
const maxIDText = "ffffffff-ffff-ffff-ffff-ffffffffffff"

// fmtTime encodes t for the database.
func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// fmtTimePtr encodes t, or nil (SQL NULL) for nil.
func fmtTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return fmtTime(*t)
}

// clock is the store's clock: the process's, in microseconds (the
// precision kept), never going back within the process. Since one process
// holds a database file at a time (the file lock), it is the database's
// clock for leases, deadlines and next-run times, as now() is for the
// PostgreSQL store.
type clock struct {
	last atomic.Int64 // microseconds since the Unix epoch
	now  func() time.Time
}

func (c *clock) read() time.Time {
	us := c.now().UnixMicro()
	for {
		last := c.last.Load()
		if us <= last {
			us = last
			break
		}
		if c.last.CompareAndSwap(last, us) {
			break
		}
	}
	return time.UnixMicro(us).UTC()
}

// after returns now + d, rounded down to the microsecond.
func after(now time.Time, d time.Duration) time.Time {
	return now.Add(d).Truncate(time.Microsecond)
}

// Scanners of the column types, for database/sql.
type (
	// timeCol scans a stored time (NOT NULL).
	timeCol struct{ t *time.Time }
	// nullTimeCol scans a stored time or NULL into a *time.Time.
	nullTimeCol struct{ t **time.Time }
	// idCol scans a UUID in its text form (NOT NULL).
	idCol struct{ id *saga.ID }
	// nullIDCol scans a UUID or NULL into a *saga.ID.
	nullIDCol struct{ id **saga.ID }
	// jsonCol scans JSON text or NULL (nil) into a json.RawMessage.
	jsonCol struct{ raw *json.RawMessage }
	// textCol scans TEXT or NULL ("") into a string type.
	textCol[S ~string] struct{ s *S }
)

var (
	_ sql.Scanner = timeCol{}
	_ sql.Scanner = nullTimeCol{}
	_ sql.Scanner = idCol{}
	_ sql.Scanner = nullIDCol{}
	_ sql.Scanner = jsonCol{}
	_ sql.Scanner = textCol[string]{}
)

func (c timeCol) Scan(v any) error     { return scanParsed(v, "time", parseTime, c.t) }
func (c nullTimeCol) Scan(v any) error { return scanNullParsed(v, "time", parseTime, c.t) }
func (c idCol) Scan(v any) error       { return scanParsed(v, "id", saga.ParseID, c.id) }
func (c nullIDCol) Scan(v any) error   { return scanNullParsed(v, "id", saga.ParseID, c.id) }
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}

// scanParsed parses the text of a NOT NULL column into *dst.
func scanParsed[T any](v any, kind string, parse func(string) (T, error), dst *T) error {
	var p *T
	if err := scanNullParsed(v, kind, parse, &p); err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("a %s column is NULL", kind)
	}
	*dst = *p
	return nil
}

// scanNullParsed parses the text of a column into *dst, nil for NULL.
func scanNullParsed[T any](v any, kind string, parse func(string) (T, error), dst **T) error {
	var s string
	switch x := v.(type) {
	case nil:
		*dst = nil
		return nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return fmt.Errorf("a %s column holds %T", kind, v)
	}
	t, err := parse(s)
	if err != nil {
		return fmt.Errorf("a %s column holds %q: %w", kind, s, err)
	}
	*dst = &t
	return nil
}

func (c jsonCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.raw = nil
	case string:
		*c.raw = json.RawMessage(x)
	case []byte:
		*c.raw = append(json.RawMessage(nil), x...)
	default:
		return fmt.Errorf("a JSON column holds %T", v)
	}
	return nil
}

func (c textCol[S]) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.s = ""
	case string:
		*c.s = S(x)
	case []byte:
		*c.s = S(x)
	default:
		return fmt.Errorf("a text column holds %T", v)
	}
	return nil
}

// Values bound to statements.

// nullText maps "" to SQL NULL.
func nullText[S ~string](s S) any {
	if s == "" {
		return nil
	}
	return string(s)
}

// jsonText binds JSON as TEXT, empty JSON as NULL.
func jsonText(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return string(raw)
}

// idText binds an id as its text form.
func idText(id saga.ID) string { return id.String() }

// nullIDText binds an optional id.
func nullIDText(id *saga.ID) any {
	if id == nil {
		return nil
	}
	return id.String()
}

// boolInt binds a bool as 0 or 1 (STRICT INTEGER columns).
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
