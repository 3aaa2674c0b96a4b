package ordershttp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// Miss benchmark settings.
const (
	missCacheBytes = 512 << 10 // a few hundred canonical orders: nearly every lookup misses
	missPoolSize   = 16        // configs/default.yaml postgres.pool_size
)

// BenchmarkOrderLookupMissLoad is the load benchmark of the read-through path:
// GET /order/{uid} over uniformly random uids of many stored orders
// (ORDERS_BENCH_MISS_ORDERS, default 50,000, canonical-shaped) with a cache bound
// of 512 KiB, so nearly every request misses and reads the order from PostgreSQL
// (a dedicated cluster with default durability). The service stack (httpx shell,
// cached store, order routes, pool of 16 connections) is measured against a bare
// Fiber handler that does the same work without the cache layer and the shell:
// ordersdb.Store.Get on its own pool of 16 connections, then orders.EncodeJSON
// of the order (the service's encoder: encoding/json's bytes, faster, so that the
// ratio counts the stack and not the encoder; encoding/json until 2026-12-04). Both use the same load generator as BenchmarkOrderLookupLoad (wrk with a
// Lua script picking a random uid per request, or the Go loader) with 64
// connections, in alternating rounds. It reports req/s and p99 of both, their
// ratio (service / bare) and the service's cache miss ratio during the run.
//
//	go test -run '^$' -bench BenchmarkOrderLookupMissLoad -benchtime 1x ./modules/orders/ordershttp
func BenchmarkOrderLookupMissLoad(b *testing.B) {
	dur := benchDuration(b)
	n := testkit.EnvInt(b, "ORDERS_BENCH_MISS_ORDERS", 50000, 1)
	const conns = 64
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	db := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(missPoolSize))

	// The service: the real stack over a pool of its own.
	uids := seedMany(b, db.Store, n)
	cached := orderscache.NewStore(db.Store, orderscache.New(missCacheBytes), orderscache.Options{})
	svc := ordershttp.NewApp(cached, ordershttp.AppConfig{
		HTTP:   httpx.Config{Logger: quiet, Registerer: prometheus.NewRegistry()},
		Orders: ordershttp.Options{APIToken: testToken},
	})

	// The baseline: Store.Get + orders.EncodeJSON in a bare Fiber handler, own pool.
	bare := bareDBApp(ordersdb.New(db.OpenPool(b, missPoolSize)))

	serviceURL, bareURL := listen(b, svc, true), listen(b, bare, false)
	paths := make([]string, len(uids))
	for i, uid := range uids {
		paths[i] = "/order/" + uid
	}
	gen := "go"
	if _, err := exec.LookPath("wrk"); err == nil && os.Getenv("ORDERS_BENCH_LOADGEN") != "go" {
		gen = "wrk"
	}
	script := ""
	if gen == "wrk" {
		script = wrkRandomPathScript(b, paths)
	}
	run := func(base string, d time.Duration) loadResult {
		if gen == "wrk" {
			return runWrk(b, base+"/", conns, d, "-s", script)
		}
		return runGoLoad(b, strings.TrimPrefix(base, "http://"), paths, conns, d, 0)
	}

	const round = 2 * time.Second
	rounds := max(int(dur/round), 1)
	b.ResetTimer()
	var svcRes, bareRes loadResult
	var before, after orderscache.Stats
	for i := 0; i < b.N; i++ {
		run(bareURL, time.Second) // warm-up: connections, page faults, PostgreSQL's buffers
		run(serviceURL, time.Second)
		before = cached.Cache().Stats()
		var bars, svcs []loadResult
		// ABBA: which server runs first in a round alternates, so that
		// whatever the one before leaves behind (PostgreSQL's and the Go
		// runtime's state, closing connections) falls on both alike.
		for r := 0; r < rounds; r++ {
			if r%2 == 0 {
				bars = append(bars, run(bareURL, round))
				svcs = append(svcs, run(serviceURL, round))
			} else {
				svcs = append(svcs, run(serviceURL, round))
				bars = append(bars, run(bareURL, round))
			}
		}
		after = cached.Cache().Stats()
		bareRes, svcRes = combine(bars), combine(svcs)
	}
	b.StopTimer()

	lookups := (after.Hits - before.Hits) + (after.Misses - before.Misses)
	if lookups == 0 {
		b.Fatal("the service saw no lookups")
	}
	missRatio := float64(after.Misses-before.Misses) / float64(lookups)
	ratio := svcRes.rps / bareRes.rps
	b.ReportMetric(svcRes.rps, "req/s")
	b.ReportMetric(svcRes.p99.Seconds()*1e3, "p99-ms")
	b.ReportMetric(bareRes.rps, "bare-req/s")
	b.ReportMetric(bareRes.p99.Seconds()*1e3, "bare-p99-ms")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(missRatio, "miss-ratio")
	b.Logf("load generator %s, %d connections, %s per server, %d stored orders, cache bound %d KiB", gen, conns, dur, n, missCacheBytes>>10)
	b.Logf("bare Get+json : %9.0f req/s  p99 %v", bareRes.rps, bareRes.p99)
	b.Logf("service       : %9.0f req/s  p99 %v  (%.2f x bare, %.1f%% misses)", svcRes.rps, svcRes.p99, ratio, 100*missRatio)
}

// benchDuration is ORDERS_BENCH_DURATION (default 10 s): the measured time per server.
func benchDuration(b *testing.B) time.Duration {
	b.Helper()
	s := os.Getenv("ORDERS_BENCH_DURATION")
	if s == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("ORDERS_BENCH_DURATION: %v", err)
	}
	return d
}

// seedMany stores n canonical-shaped orders with distinct uids in 1,000-order
// batches and returns their uids.
func seedMany(b *testing.B, store *ordersdb.Store, n int) []string {
	b.Helper()
	o, _ := testkit.Canonical(b)
	uids := make([]string, n)
	batch := make([]orders.Record, 0, 1000)
	flush := func() {
		if _, err := store.ApplyBatch(context.Background(), batch); err != nil {
			b.Fatalf("seed: %v", err)
		}
		batch = batch[:0]
	}
	for i := range uids {
		uids[i] = fmt.Sprintf("benchmiss%08d", i)
		batch = append(batch, orders.Record{Order: withUID(o, uids[i]), Version: orders.Version{Partition: 0, Offset: int64(i) + 1}})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return uids
}

// bareDBApp is the miss baseline: a Fiber app whose handler reads the order with
// store.Get and encodes it with orders.EncodeJSON, nothing else.
func bareDBApp(store *ordersdb.Store) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/order/:uid", func(c *fiber.Ctx) error {
		o, _, err := store.Get(c.UserContext(), strings.Clone(c.Params("uid")))
		if errors.Is(err, orders.ErrNotFound) {
			return fiber.ErrNotFound
		}
		if err != nil {
			return err
		}
		body, err := orders.EncodeJSON(&o)
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	return app
}

// wrkRandomPathScript writes a wrk Lua script that sends GET for a uniformly
// random path of paths on every request, and returns its file name.
func wrkRandomPathScript(b *testing.B, paths []string) string {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("local paths = {\n")
	for _, p := range paths {
		sb.WriteString(strconv.Quote(p))
		sb.WriteString(",\n")
	}
	// Each wrk thread has its own Lua state: setup numbers them, init seeds each apart.
	sb.WriteString(`}
local n = #paths
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  math.randomseed(os.time() * 16 + id)
end
function request()
  return wrk.format("GET", paths[math.random(n)])
end
`)
	name := filepath.Join(b.TempDir(), "random_paths.lua")
	if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return name
}
