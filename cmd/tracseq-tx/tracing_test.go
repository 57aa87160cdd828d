package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTracingConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env      map[string]string
		exporter string
		endpoint string
		err      string
	}{
		{env: nil, exporter: TracesOff},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, exporter: TracesOTLP,
			endpoint: "http://collector:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector/custom"}, exporter: TracesOTLP,
			endpoint: "https://collector/custom"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, exporter: TracesOTLP, endpoint: OTLPEndpointDefault},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, exporter: TracesConsole},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, exporter: TracesOff},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, exporter: TracesOff},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
			exporter: TracesOTLP, endpoint: "http://c:4318/v1/traces"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, err: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
			err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, err: "OTEL_EXPORTER_OTLP_ENDPOINT"},
	} {
		cfg, err := LoadConfig(envOf(c.env))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one naming %s", c.env, err, c.err)
			}
		case err != nil:
			t.Errorf("%v: %v", c.env, err)
		case cfg.Tracing.Exporter != c.exporter || cfg.Tracing.Endpoint != c.endpoint:
			t.Errorf("%v: exporter %q endpoint %q, want %q %q", c.env, cfg.Tracing.Exporter, cfg.Tracing.Endpoint, c.exporter, c.endpoint)
		}
	}
}

// otlpReceiver is an OTLP/HTTP traces endpoint that keeps what it gets.
type otlpReceiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var msg collectortrace.ExportTraceServiceRequest
		if req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.spans = append(r.spans, msg.GetResourceSpans()...)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// TestTracingExportsOTLP sends a span through the provider the service
// builds from OTEL_EXPORTER_OTLP_ENDPOINT, and reads it at the receiver
// with the service's resource.
func TestTracingExportsOTLP(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	cfg, err := LoadConfig(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL, "OTEL_SERVICE_NAME": "tx-under-test"}))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := newTracerProvider(context.Background(), cfg.Tracing, "instance-7", io.Discard)
	if err != nil || tp == nil {
		t.Fatalf("newTracerProvider: %v", err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "saga exported")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown (flush): %v", err)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.spans) != 1 {
		t.Fatalf("the receiver got %d resource spans, want 1", len(rcv.spans))
	}
	attrs := map[string]string{}
	for _, kv := range rcv.spans[0].GetResource().GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if attrs["service.name"] != "tx-under-test" || attrs["service.instance.id"] != "instance-7" {
		t.Errorf("resource %v, want service.name tx-under-test and service.instance.id instance-7", attrs)
	}
	ss := rcv.spans[0].GetScopeSpans()
	if len(ss) != 1 || len(ss[0].GetSpans()) != 1 || ss[0].GetSpans()[0].GetName() != "saga exported" {
		t.Errorf("scope spans %v, want the one span", ss)
	}
}

// TestServeWithTracing starts the service with tracing on and stops it
// (which flushes the exporter).
func TestServeWithTracing(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
	if !strings.Contains(b.logs.String(), "tracing on") {
		t.Errorf("the log does not say tracing is on:\n%s", b.logs)
	}
	if err := b.main.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
