package saga_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func secretDefinition() saga.Definition {
	def := validDefinition()
	def.SecretHeaders = []string{"X-Internal-Token"}
	def.Steps[0].Action.Headers = map[string]string{"Authorization": "Bearer s3cret-1", "X-Tenant": "lab-7"}
	def.Steps[0].Compensation.Headers = map[string]string{"x_internal_token": "s3cret-2", "Cookie": "session=s3cret-3"}
	return def
}

func TestSealerRoundTrip(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 32)
	s, err := saga.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	def := secretDefinition()
	raw, err := s.EncodeDefinition(&def)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("s3cret")) {
		t.Fatalf("sealed definition shows a secret: %s", raw)
	}
	if !bytes.Contains(raw, []byte("lab-7")) || !bytes.Contains(raw, []byte("tracseq-sealed:v1:")) {
		t.Fatalf("sealed definition: %s", raw)
	}
	if def.Steps[0].Action.Headers["Authorization"] != "Bearer s3cret-1" {
		t.Fatal("Seal changed the caller's definition")
	}
	var back saga.Definition
	if err := s.DecodeDefinition(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !back.SameRequest(&def) {
		t.Errorf("opened definition differs: %+v", back)
	}

	// Rotation: a Sealer with a new key first opens what the old sealed.
	rotated, err := saga.NewSealer(bytes.Repeat([]byte{9}, 16), key)
	if err != nil {
		t.Fatal(err)
	}
	back = saga.Definition{}
	if err := rotated.DecodeDefinition(raw, &back); err != nil || !back.SameRequest(&def) {
		t.Errorf("rotated key: %v", err)
	}

	// Without the key, or with another one: ErrSealed naming the header.
	for name, other := range map[string]*saga.Sealer{"no key": nil, "another key": mustSealer(t, bytes.Repeat([]byte{1}, 32))} {
		var d saga.Definition
		err := other.DecodeDefinition(raw, &d)
		if !errors.Is(err, saga.ErrSealed) || !strings.Contains(err.Error(), "header") {
			t.Errorf("%s: %v; want ErrSealed naming the header", name, err)
		}
	}
	// A value moved to another header does not open.
	moved := bytes.Replace(raw, []byte(`"Authorization"`), []byte(`"Cookie"`), 1)
	var d saga.Definition
	if err := s.DecodeDefinition(moved, &d); !errors.Is(err, saga.ErrSealed) {
		t.Errorf("moved value: %v; want ErrSealed", err)
	}
}

func TestNilSealerKeepsDefinitions(t *testing.T) {
	t.Parallel()
	var s *saga.Sealer
	def := secretDefinition()
	raw, err := s.EncodeDefinition(&def)
	if err != nil || !bytes.Contains(raw, []byte("s3cret-1")) {
		t.Fatalf("nil sealer: %s, %v", raw, err)
	}
	var back saga.Definition
	if err := s.DecodeDefinition(raw, &back); err != nil || !back.SameRequest(&def) {
		t.Errorf("nil sealer round trip: %v", err)
	}
}

func mustSealer(t *testing.T, key []byte) *saga.Sealer {
	t.Helper()
	s, err := saga.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseSealerKeys(t *testing.T) {
	t.Parallel()
	good := map[string]int{
		"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=":                  1,
		"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc":                   1,
		"07070707070707070707070707070707":                              1,
		" 07070707070707070707070707070707 , AAAAAAAAAAAAAAAAAAAAAA== ": 2,
	}
	for in, n := range good {
		keys, err := saga.ParseSealerKeys(in)
		if err != nil || len(keys) != n {
			t.Errorf("ParseSealerKeys(%q) = %d keys, %v; want %d", in, len(keys), err, n)
		}
	}
	for _, in := range []string{"", " , ", "short", "not-a-key-at-all-but-secret", "0707"} {
		_, err := saga.ParseSealerKeys(in)
		if err == nil {
			t.Errorf("ParseSealerKeys(%q) accepted", in)
		} else if in != "" && len(in) > 5 && strings.Contains(err.Error(), in) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
	if _, err := saga.NewSealer([]byte("15 bytes long!!")); err == nil {
		t.Error("NewSealer accepted a 15-byte key")
	}
}

func TestValidateRefusesSealedLookingValues(t *testing.T) {
	t.Parallel()
	def := validDefinition()
	def.Steps[0].Action.Headers = map[string]string{"Authorization": "tracseq-sealed:v1:abcd:xyz"}
	if err := def.Validate(); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("Validate() = %v", err)
	}
}
