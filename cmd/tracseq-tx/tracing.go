package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Tracing exporters (OTEL_TRACES_EXPORTER).
const (
	TracesOff     = ""
	TracesOTLP    = "otlp"
	TracesConsole = "console"
	// OTLPProtocolHTTP is the one OTLP protocol the service speaks.
	OTLPProtocolHTTP = "http/protobuf"
	// OTLPEndpointDefault is OTLP/HTTP's default traces endpoint.
	OTLPEndpointDefault = "http://localhost:4318/v1/traces"
	// ServiceNameDefault is the service.name of the spans.
	ServiceNameDefault = "tracseq-tx"
	// tracingShutdownTimeout bounds the flush of spans at shutdown.
	tracingShutdownTimeout = 5 * time.Second
)

// TracingConfig is the OpenTelemetry configuration, read from the OTel
// environment variables. Tracing is off unless OTEL_TRACES_EXPORTER or an
// OTLP endpoint variable is set.
type TracingConfig struct {
	Exporter    string // TracesOff, TracesOTLP or TracesConsole
	Endpoint    string // the OTLP/HTTP traces URL
	ServiceName string // OTEL_SERVICE_NAME
}

// tracing reads the OTel variables: OTEL_SDK_DISABLED,
// OTEL_TRACES_EXPORTER (otlp, console or none),
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), OTEL_EXPORTER_OTLP_PROTOCOL
// and its _TRACES_ form (http/protobuf only), OTEL_SERVICE_NAME. The
// exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers,
// timeout, certificates) itself.
func (p *envParser) tracing() TracingConfig {
	cfg := TracingConfig{ServiceName: ServiceNameDefault}
	if v, set := p.value("OTEL_SERVICE_NAME"); set {
		cfg.ServiceName = v
	}
	if p.boolean("OTEL_SDK_DISABLED", false) {
		return cfg
	}
	tracesEndpoint, hasTraces := p.value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	endpoint, hasBase := p.value("OTEL_EXPORTER_OTLP_ENDPOINT")
	exporter, set := p.value("OTEL_TRACES_EXPORTER")
	switch {
	case !set && (hasTraces || hasBase):
		exporter = TracesOTLP
	case !set:
		return cfg
	}
	switch strings.ToLower(exporter) {
	case "none":
		return cfg
	case TracesConsole:
		cfg.Exporter = TracesConsole
		return cfg
	case TracesOTLP:
		cfg.Exporter = TracesOTLP
	default:
		p.failValue("OTEL_TRACES_EXPORTER", exporter, "must be otlp, console or none")
		return cfg
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v, set := p.value(name); set {
			if v != OTLPProtocolHTTP {
				p.failValue(name, v, "only http/protobuf is supported (the OTLP/HTTP port is usually 4318)")
			}
			break
		}
	}
	name := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	switch {
	case hasTraces:
		cfg.Endpoint = tracesEndpoint
	case hasBase:
		name, cfg.Endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimRight(endpoint, "/")+"/v1/traces"
	default:
		cfg.Endpoint = OTLPEndpointDefault
	}
	if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.failValue(name, cfg.Endpoint, "must be an http:// or https:// URL such as http://collector:4318")
	}
	return cfg
}

// newTracerProvider returns the tracer provider of cfg, nil when tracing
// is off. Spans are batched; the provider's Shutdown flushes them.
func newTracerProvider(ctx context.Context, cfg TracingConfig, instanceID string, stderr io.Writer) (*sdktrace.TracerProvider, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Exporter {
	case TracesOff:
		return nil, nil
	case TracesConsole:
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stderr))
	case TracesOTLP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint))
	default:
		err = fmt.Errorf("unknown exporter %q", cfg.Exporter)
	}
	if err != nil {
		return nil, fmt.Errorf("create the %s trace exporter: %w", cfg.Exporter, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.instance.id", instanceID),
		attribute.String("service.version", versionString()),
	))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
