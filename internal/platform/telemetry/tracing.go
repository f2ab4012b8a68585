package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	// The SDK's resource package uses this semconv version: sharing it keeps the schema URLs
	// equal, which resource.Merge requires.
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultSampleRatio is the share of new traces a production process samples unless told otherwise
// (lastmile serve --trace-sample-ratio): one in a hundred. Tracing every call costs a trivial call about
// as much CPU as bare grpc-go spends on the whole call (BENCHMARKS.md); at 1%, and with GRPCServerHandler
// and GRPCClientHandler skipping unsampled calls, traces still show every kind of slow call within
// seconds at the rates lastmile serves, and continued traces follow their caller's decision whatever the
// ratio.
const DefaultSampleRatio = 0.01

// TracingConfig configures SetupTracing.
type TracingConfig struct {
	// ServiceName is the service.name resource attribute. Required.
	ServiceName string
	// Version is the service.version resource attribute; omitted when empty.
	Version string
	// OTLPEndpoint is the OTLP/gRPC collector, as host:port or as an http:// or https:// URL.
	// When empty no span leaves the process, but spans still get valid ids.
	OTLPEndpoint string
	// Insecure disables TLS to the collector.
	Insecure bool
	// SampleRatio is the fraction of new traces sampled, in [0, 1]; 0 means the default, 1.
	// Traces continued from a caller follow the caller's sampling decision.
	SampleRatio float64
}

// SetupTracing builds a tracer provider for cfg and returns it with its shutdown function, which
// flushes buffered spans and must be called before the process exits. Give the provider to
// GRPCServerHandler and GRPCClientHandler, which then do tracing work only for sampled calls.
//
// Without an OTLPEndpoint the provider has no exporter: spans are created with valid trace and
// span ids, so ids still appear in logs and propagate to peers, and shutdown does nothing. With
// an endpoint, spans are batched to an OTLP/gRPC exporter; the connection is made lazily, so an
// unreachable collector does not fail startup.
//
// SetupTracing sets the global text map propagator to W3C TraceContext + Baggage, but does not
// install the provider globally: the caller decides (otel.SetTracerProvider) or passes it to the
// instrumentation explicitly, which keeps tests and in-process peers independent.
func SetupTracing(ctx context.Context, cfg TracingConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.ServiceName == "" {
		return nil, nil, errors.New("setup tracing: empty service name")
	}
	ratio := cfg.SampleRatio
	if math.IsNaN(ratio) || ratio < 0 || ratio > 1 {
		return nil, nil, fmt.Errorf("setup tracing: sample ratio %v outside [0, 1]", cfg.SampleRatio)
	}
	if ratio == 0 {
		ratio = 1
	}

	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.ServiceName)}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		return nil, nil, fmt.Errorf("setup tracing: build resource: %w", err)
	}

	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithIDGenerator(idGenerator{}),
	}
	shutdown := func(context.Context) error { return nil }
	if cfg.OTLPEndpoint != "" {
		exp, err := newExporter(ctx, cfg.OTLPEndpoint, cfg.Insecure)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := &tracerProvider{TracerProvider: sdktrace.NewTracerProvider(opts...), ratio: ratio}
	if cfg.OTLPEndpoint != "" {
		shutdown = tp.Shutdown
	}

	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{},
		propagation.Baggage{},
	))
	return tp, shutdown, nil
}

// tracerProvider is the SDK's provider with the ratio it samples new traces at, which GRPCServerHandler
// and GRPCClientHandler apply before asking it for a span.
type tracerProvider struct {
	*sdktrace.TracerProvider
	ratio float64
}

func newExporter(ctx context.Context, endpoint string, insecure bool) (sdktrace.SpanExporter, error) {
	var opts []otlptracegrpc.Option
	if strings.Contains(endpoint, "://") {
		// The exporter silently falls back to localhost on a bad URL: check it here instead.
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, fmt.Errorf("setup tracing: parse OTLP endpoint: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("setup tracing: OTLP endpoint %q: want host:port or an http(s) URL", endpoint)
		}
		opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
	} else {
		opts = append(opts, otlptracegrpc.WithEndpoint(endpoint))
	}
	if insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("setup tracing: create OTLP exporter for %s: %w", endpoint, err)
	}
	return exp, nil
}
