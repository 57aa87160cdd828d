package httpapi

import "testing"

// BenchmarkDecodeDefinition decodes the body of a 2-step submit such as the
// load tool sends.
func BenchmarkDecodeDefinition(b *testing.B) {
	body := []byte(`{"name":"load","context":{"load_run":"r1","n":7},"steps":[` +
		`{"name":"step-1","action":{"method":"POST","url":"http://127.0.0.1:40000/step/1/action","body":{"n":7}},` +
		`"compensation":{"method":"POST","url":"http://127.0.0.1:40000/step/1/compensate","body":{"n":7}},` +
		`"retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":200}},` +
		`{"name":"step-2","action":{"method":"POST","url":"http://127.0.0.1:40000/step/2/action","body":{"n":7}},` +
		`"compensation":{"method":"POST","url":"http://127.0.0.1:40000/step/2/compensate","body":{"n":7}},` +
		`"retry":{"max_attempts":3,"initial_backoff_ms":10,"max_backoff_ms":200}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDefinition(body); err != nil {
			b.Fatal(err)
		}
	}
}
