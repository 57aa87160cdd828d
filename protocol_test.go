package saga

import (
	"errors"
	"testing"
)

func TestValidateProtocol(t *testing.T) {
	t.Parallel()
	def := func(p Protocol) *Definition {
		return &Definition{Name: "p", Steps: []StepDefinition{{
			Name:         "a",
			Action:       Request{Method: "POST", URL: "http://x/a", Protocol: p},
			Compensation: &Request{Method: "POST", URL: "http://x/b", Protocol: p},
		}}}
	}
	for _, p := range []Protocol{"", ProtocolNative, ProtocolDTM} {
		if err := def(p).Validate(); err != nil {
			t.Errorf("protocol %q: %v", p, err)
		}
	}
	err := def("grpc").Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 || ve.Problems[0].Field != "steps[0].action.protocol" ||
		ve.Problems[1].Field != "steps[0].compensation.protocol" {
		t.Fatalf("protocol grpc: %v", err)
	}
}
