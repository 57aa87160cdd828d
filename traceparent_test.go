package saga_test

import (
	"strings"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func TestValidTraceParent(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":        true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra":  false,
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":        false,
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":        false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01":        false,
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":         false,
		"": false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + strings.Repeat("x", 300): false,
	} {
		if got := saga.ValidTraceParent(s); got != want {
			t.Errorf("ValidTraceParent(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestDefinitionTraceParentValidated(t *testing.T) {
	t.Parallel()
	def := saga.Definition{Name: "n", TraceParent: "00-nope", Steps: []saga.StepDefinition{
		{Name: "a", Action: saga.Request{Method: "POST", URL: "http://p.test/a"}}}}
	err := def.Validate()
	if err == nil || !strings.Contains(err.Error(), "trace_parent") {
		t.Fatalf("Validate of a bad trace_parent = %v, want an error naming trace_parent", err)
	}
	def.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := def.Validate(); err != nil {
		t.Fatalf("Validate of a good trace_parent: %v", err)
	}
}
