package main

import (
	"strings"
	"testing"

	"github.com/tracseq/transaction-service/httpapi"
)

// show draws a graph's order stage by stage, and each step's dependencies.
func TestPrintSagaDrawsTheGraph(t *testing.T) {
	t.Parallel()
	s := &httpapi.SagaJSON{ID: "id", Name: "checkout", Status: "Completed", MaxParallel: 8, Steps: []httpapi.StepJSON{
		{Name: "reserve", Index: 0, DependsOn: []string{}, Status: "Completed"},
		{Name: "check-credit", Index: 1, DependsOn: []string{}, Status: "Completed"},
		{Name: "charge", Index: 2, DependsOn: []string{"reserve", "check-credit"}, Status: "Completed"},
		{Name: "ship", Index: 3, DependsOn: []string{"charge"}, Status: "Completed"},
	}}
	var b strings.Builder
	printSaga(&b, s)
	out := b.String()
	for _, want := range []string{
		"Order (at most 8 calls at once):",
		"  1. reserve | check-credit\n",
		"  2. charge\n",
		"  3. ship\n",
		"reserve,check-credit",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	// A chain prints no order section: its steps run as listed.
	s.MaxParallel = 1
	b.Reset()
	printSaga(&b, s)
	if strings.Contains(b.String(), "Order") {
		t.Errorf("a chain printed an order section:\n%s", b.String())
	}
}
