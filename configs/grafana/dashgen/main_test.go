package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// committed is the dashboard file Grafana provisions, relative to this package.
const committed = "../dashboards/orders.json"

// TestCommittedDashboardIsGenerated fails when configs/grafana/dashboards/orders.json
// is not exactly what the builders here produce: the JSON was edited by hand, or the
// Go was changed without regenerating it.
func TestCommittedDashboardIsGenerated(t *testing.T) {
	want, err := render()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the generated dashboard (%s): edit configs/grafana/dashgen, not the JSON, "+
			"and regenerate it with `go tool task dashboards` (or `go generate ./configs/grafana/dashgen`)", committed, firstDiff(got, want))
	}
}

// firstDiff says where two files first differ, by line.
func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < len(g) && i < len(w); i++ {
		if !bytes.Equal(g[i], w[i]) {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("committed has %d lines, generated %d", len(g), len(w))
}
