package telemetry

import (
	"errors"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors registered.
// Every process uses its own registry rather than prometheus.DefaultRegisterer, so that tests and
// the all-in-one process never collide on global state.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// BuildInfo registers the lastmile_build_info gauge, always 1, labelled with version, commit and
// the Go version the binary was built with, so dashboards can join any series on the running
// build. It panics if a gauge with the same labels is already registered with reg, like
// prometheus.MustRegister.
func BuildInfo(reg prometheus.Registerer, version, commit string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lastmile_build_info",
		Help: "Build information of the running binary; the value is always 1.",
		ConstLabels: prometheus.Labels{
			"version":   version,
			"commit":    commit,
			"goversion": runtime.Version(),
		},
	})
	g.Set(1)
	reg.MustRegister(g)
}

// Register registers c with reg and returns it, or, when reg already holds an equal collector of the same
// type (a process runs several servers or clients on one registry, and tests build many), returns that
// one, so that every user shares one set of series. A nil reg leaves c unregistered and returns it.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
