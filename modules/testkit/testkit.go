// Package testkit holds the small helpers tests of every package share: the
// canonical sample order decoded, JSON comparison and integer settings from the
// environment. Its sub-packages hold the rest of the test infrastructure:
//
//	testenv    real PostgreSQL clusters, Kafka broker access, the service harness (the built binary)
//	dbtest     a fresh migrated database with its bun pool and the orders store, per test
//	storetest  the contract suite every orders.Store implementation passes
//	benchreport  the benchmark table of `go tool task bench` (a command)
//
// Nothing outside tests imports these packages: they import testing.
package testkit

import (
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
)

// Canonical returns the canonical sample order (orders.Sample) decoded and
// validated, and its raw JSON (a fresh copy the caller may change).
func Canonical(tb testing.TB) (orders.Order, []byte) {
	tb.Helper()
	raw := orders.Sample()
	o, err := orders.Parse(raw, orders.DefaultMaxMessageBytes)
	if err != nil {
		tb.Fatalf("testkit: canonical order: %v", err)
	}
	return o, raw
}

// SameJSON reports whether a and b hold the same JSON value (object member order
// and white space aside). It fails the test when either is not JSON.
func SameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		tb.Fatalf("not JSON: %v: %.200s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		tb.Fatalf("not JSON: %v: %.200s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// EnvInt returns the integer in the environment variable name, or def when it is
// unset or empty. It fails the test when the value is not an integer >= least.
func EnvInt(tb testing.TB, name string, def, least int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < least {
		tb.Fatalf("%s=%q: want an integer >= %d", name, s, least)
	}
	return v
}
