package console

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// The timeline's geometry, in SVG user units.
const (
	tlWidth  = 1000.0
	tlLabel  = 230.0 // the label column
	tlRight  = 10.0
	tlRowH   = 24.0
	tlBarH   = 14.0
	tlAxisH  = 22.0
	tlMinBar = 2.0
)

// timeline is a saga's steps drawn against time: one row per step and one
// per compensation, ordered by the step's level in the graph so that steps
// that run in parallel sit side by side, bars from start to end, a tick at
// each attempt's start.
type timeline struct {
	Width, Height float64
	Rows          []tlRow
	Ticks         []tlTick
	AxisY         float64
	Span          string
}

type tlRow struct {
	Y, TextY    float64
	Label       string
	Level       int
	Kind        string // action or compensation
	Status      string
	Bar         *tlBar
	Attempts    []tlMark
	NotRun      bool
	LevelChange bool // first row of a new level: a separator is drawn
}

type tlBar struct {
	X, Y, W, H float64
	Title      string
	Open       bool // still running: drawn to now
}

type tlMark struct {
	X, Y1, Y2 float64
	Title     string
}

type tlTick struct {
	X      float64
	Label  string
	Anchor string
}

// attemptData is the data of StepStarted and CompensationStarted events.
type attemptData struct {
	Attempt int    `json:"attempt"`
	Kind    string `json:"kind"`
}

func newTimeline(s *saga.Saga, events []saga.Event, levels []int, now time.Time) timeline {
	t0 := s.CreatedAt
	t1 := now
	if s.CompletedAt != nil {
		t1 = *s.CompletedAt
	}
	// Where each call was last heard of, for bars whose end is not stored
	// (a failed attempt before the next).
	type key struct {
		step int
		comp bool
	}
	last := map[key]time.Time{}
	starts := map[key][]attemptAt{}
	for _, e := range events {
		if e.CreatedAt.After(t1) {
			t1 = e.CreatedAt
		}
		if e.StepIndex == nil {
			continue
		}
		comp := isCompensationEvent(e.Type)
		k := key{*e.StepIndex, comp}
		last[k] = e.CreatedAt
		if e.Type == saga.EventStepStarted || e.Type == saga.EventCompensationStarted {
			var d attemptData
			_ = json.Unmarshal(e.Data, &d)
			starts[k] = append(starts[k], attemptAt{n: d.Attempt, at: e.CreatedAt})
		}
	}
	total := t1.Sub(t0)
	if total <= 0 {
		total = time.Millisecond
	}
	area := tlWidth - tlLabel - tlRight
	x := func(t time.Time) float64 {
		f := float64(t.Sub(t0)) / float64(total)
		return tlLabel + min(max(f, 0), 1)*area
	}

	order := make([]int, len(s.Steps))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return levelOf(levels, a) - levelOf(levels, b) })

	tl := timeline{Width: tlWidth, Span: human(total)}
	y := tlAxisH
	prevLevel := -1
	addRow := func(label, kind, status string, level int, start, end *time.Time, running bool, k key) {
		row := tlRow{Y: y, TextY: y + tlRowH/2 + 4, Label: label, Level: level, Kind: kind, Status: status,
			LevelChange: level != prevLevel && prevLevel >= 0}
		prevLevel = level
		by := y + (tlRowH-tlBarH)/2
		switch {
		case start == nil:
			row.NotRun = true
		default:
			stop, open := end, false
			if stop == nil {
				if running {
					stop, open = &now, true
				} else if at, ok := last[k]; ok {
					stop = &at
				} else {
					stop = start
				}
			}
			x0, x1 := x(*start), x(*stop)
			row.Bar = &tlBar{X: x0, Y: by, W: max(x1-x0, tlMinBar), H: tlBarH, Open: open,
				Title: fmt.Sprintf("%s %s: %s, %s", kind, label, status, human(stop.Sub(*start)))}
		}
		for _, a := range starts[k] {
			row.Attempts = append(row.Attempts, tlMark{X: x(a.at), Y1: y + 2, Y2: y + tlRowH - 2,
				Title: fmt.Sprintf("attempt %d at +%s", a.n, human(a.at.Sub(t0)))})
		}
		tl.Rows = append(tl.Rows, row)
		y += tlRowH
	}
	for _, i := range order {
		st := &s.Steps[i]
		level := levelOf(levels, i)
		running := st.Status == saga.StepStatusExecuting || st.Status == saga.StepStatusRetrying
		addRow(st.Name, "action", string(st.Status), level, st.StartedAt, st.CompletedAt, running, key{i, false})
		if cp := st.Compensation; cp != nil {
			running := cp.Status == saga.CompensationStatusExecuting || cp.Status == saga.CompensationStatusRetrying
			addRow("↩ "+st.Name, "compensation", string(cp.Status), level, cp.StartedAt, cp.CompletedAt, running, key{i, true})
		}
	}
	tl.AxisY = y + 4
	tl.Height = y + tlAxisH
	for i := range 5 {
		f := float64(i) / 4
		anchor := map[int]string{0: "start", 4: "end"}[i]
		tl.Ticks = append(tl.Ticks, tlTick{X: tlLabel + f*area, Label: "+" + human(time.Duration(f*float64(total))), Anchor: cmp.Or(anchor, "middle")})
	}
	return tl
}

type attemptAt struct {
	n  int
	at time.Time
}

func levelOf(levels []int, i int) int {
	if i < len(levels) {
		return levels[i]
	}
	return 0
}

// isCompensationEvent reports whether an event about a step is about its
// compensation.
func isCompensationEvent(t saga.EventType) bool {
	switch t {
	case saga.EventCompensationStarted, saga.EventCompensationCompleted,
		saga.EventCompensationFailed, saga.EventCompensationRetrying:
		return true
	}
	return false
}
