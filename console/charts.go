package console

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// chart is a line chart of the per-minute activity: one polyline per
// series over a shared y axis.
type chart struct {
	Width, Height float64
	Left, Bottom  float64
	Series        []series
	YTicks        []tick
	XTicks        []tick
	Max           int64
	Empty         bool
}

type series struct {
	Name   string
	Class  string
	Points string
	Total  int64
	Dots   []dot
}

type dot struct {
	X, Y  float64
	Title string
}

type tick struct {
	X, Y   float64
	Label  string
	Anchor string // text-anchor: start, middle or end
}

const (
	chW      = 960.0
	chH      = 260.0
	chLeft   = 48.0
	chRight  = 12.0
	chTop    = 12.0
	chBottom = 28.0
)

func newRateChart(a saga.Activity) chart {
	c := chart{Width: chW, Height: chH, Left: chLeft, Bottom: chH - chBottom}
	var peak int64
	for _, b := range a.Buckets {
		peak = max(peak, b.Started, b.Completed, b.Failed)
	}
	c.Empty = peak == 0
	// A multiple of 4 (at least 4), so that the five y ticks are whole.
	c.Max = max((niceCeil(max(peak, 1))+3)/4*4, 4)
	n := len(a.Buckets)
	plotW, plotH := chW-chLeft-chRight, chH-chTop-chBottom
	xOf := func(i int) float64 {
		if n <= 1 {
			return chLeft
		}
		return chLeft + float64(i)/float64(n-1)*plotW
	}
	yOf := func(v int64) float64 { return chTop + plotH - float64(v)/float64(c.Max)*plotH }
	for _, s := range []struct {
		name, class string
		get         func(saga.ActivityPoint) int64
	}{
		{"started", "s-started", func(p saga.ActivityPoint) int64 { return p.Started }},
		{"completed", "s-completed", func(p saga.ActivityPoint) int64 { return p.Completed }},
		{"failed (ended otherwise)", "s-failed", func(p saga.ActivityPoint) int64 { return p.Failed }},
	} {
		var pts []string
		ser := series{Name: s.name, Class: s.class}
		for i, b := range a.Buckets {
			v := s.get(b)
			ser.Total += v
			x, y := xOf(i), yOf(v)
			pts = append(pts, strconv.FormatFloat(x, 'f', 1, 64)+","+strconv.FormatFloat(y, 'f', 1, 64))
			if v > 0 {
				ser.Dots = append(ser.Dots, dot{X: x, Y: y, Title: fmt.Sprintf("%s %s: %d", b.Start.Format("15:04"), s.name, v)})
			}
		}
		ser.Points = strings.Join(pts, " ")
		c.Series = append(c.Series, ser)
	}
	for i := range 5 {
		v := c.Max * int64(i) / 4
		c.YTicks = append(c.YTicks, tick{X: chLeft - 6, Y: yOf(v) + 4, Label: strconv.FormatInt(v, 10), Anchor: "end"})
	}
	for i := 0; i < n; i += max(n/6, 1) {
		anchor := "middle"
		switch {
		case i == 0:
			anchor = "start"
		case i+max(n/6, 1) >= n && xOf(i) > chW-chRight-20:
			anchor = "end"
		}
		c.XTicks = append(c.XTicks, tick{X: xOf(i), Y: chH - 8, Label: a.Buckets[i].Start.Format("15:04"), Anchor: anchor})
	}
	return c
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten.
func niceCeil(n int64) int64 {
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// durationBars are two horizontal bars: the median and the 95th
// percentile of the durations.
type durationBars struct {
	Bars []hbar
}

type hbar struct {
	Label string
	Class string
	Y     float64
	W     float64
	Value string
	TextX float64
}

const (
	hbW     = 600.0
	hbLabel = 120.0
	hbRowH  = 28.0
)

func newDurationBars(p50, p95 time.Duration) durationBars {
	top := max(p95, p50, time.Millisecond)
	var out durationBars
	for i, d := range []struct {
		label string
		v     time.Duration
	}{{"p50", p50}, {"p95", p95}} {
		w := float64(d.v) / float64(top) * (hbW - hbLabel - 80)
		out.Bars = append(out.Bars, hbar{Label: d.label, Class: "s-duration", Y: float64(i) * hbRowH, W: max(w, 1),
			Value: human(d.v), TextX: hbLabel + max(w, 1) + 6})
	}
	return out
}

// statusBars are the counts by status as horizontal bars.
type statusBars struct {
	Bars   []hbar
	Height float64
}

func newStatusBars(by map[saga.SagaStatus]int64) statusBars {
	var peak int64 = 1
	for _, n := range by {
		peak = max(peak, n)
	}
	var out statusBars
	for i, st := range saga.SagaStatuses {
		n := by[st]
		w := float64(n) / float64(peak) * (hbW - hbLabel - 80)
		out.Bars = append(out.Bars, hbar{Label: string(st), Class: "st-" + string(st), Y: float64(i) * hbRowH,
			W: max(w, 1), Value: strconv.FormatInt(n, 10), TextX: hbLabel + max(w, 1) + 6})
	}
	out.Height = float64(len(saga.SagaStatuses)) * hbRowH
	return out
}
