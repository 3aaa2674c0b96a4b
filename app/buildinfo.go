package main

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// newBuildInfo returns the orders_build_info gauge: always 1, labelled with the
// service version (set at build time) and the Go version it was built with, so
// dashboards can show what runs and join it with other series.
func newBuildInfo(version string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "orders_build_info",
		Help:        "Build information of the order service; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}, func() float64 { return 1 })
}
