package systest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// The chaos cases: a TCP fault proxy (toxiproxy, in process) between the
// service and PostgreSQL and between it and a dedicated Kafka broker (which
// advertises the proxy, so every client goes through it). Each case runs a
// stream at streamRate, applies one fault for a while once a fifth of it is
// stored, removes it, and then requires what every fault case requires: every
// valid order stored once at its latest version, every bad message in the DLQ
// once, the committed lag 0, with nothing restarted by hand.

// chaos is the proxies of a case.
type chaos struct {
	pg, kafka *toxiproxy.Proxy
}

func newProxy(t *testing.T, srv *toxiproxy.ApiServer, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("proxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return p
}

// toxic adds a toxic (toxiproxy's JSON: type, stream, attributes) to p.
func toxic(t *testing.T, p *toxiproxy.Proxy, name, typ, stream, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("toxic %s on %s: %v", name, p.Name, err)
	}
}

func untoxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("remove toxic %s from %s: %v", name, p.Name, err)
	}
}

// proxiedDSN returns dsn with its host:port replaced by addr.
func proxiedDSN(t *testing.T, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

func TestChaosBetweenServiceAndDependencies(t *testing.T) {
	requireEnv(t)
	if reason := testenv.KafkaBrokerAvailable(); reason != "" {
		t.Skipf("chaos cases need their own broker: %s", reason)
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	c := &chaos{}
	b := testenv.StartKafkaBrokerBehind(t, func(upstream string) string {
		c.kafka = newProxy(t, srv, "kafka", upstream)
		return c.kafka.Listen
	})
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{Durable: true})
	c.pg = newProxy(t, srv, "postgres", fmt.Sprintf("127.0.0.1:%d", cluster.Port()))
	n := testkit.EnvInt(t, "CHAOS_ORDERS", 2000, 200)

	cases := []struct {
		name, proxy, typ, stream, attrs string
		hold                            time.Duration
	}{
		{"postgres latency 2 s", "postgres", "latency", "downstream", `{"latency":2000,"jitter":500}`, 5 * time.Second},
		{"postgres bandwidth 32 KB/s", "postgres", "bandwidth", "downstream", `{"rate":32}`, 4 * time.Second},
		{"postgres connections reset mid-transaction", "postgres", "reset_peer", "upstream", `{"timeout":0}`, 2 * time.Second},
		{"postgres half-open, never answers", "postgres", "timeout", "downstream", `{"timeout":0}`, 10 * time.Second},
		{"kafka latency 2 s", "kafka", "latency", "downstream", `{"latency":2000,"jitter":500}`, 5 * time.Second},
		{"kafka bandwidth 64 KB/s", "kafka", "bandwidth", "downstream", `{"rate":64}`, 4 * time.Second},
		{"kafka connections reset mid-commit", "kafka", "reset_peer", "upstream", `{"timeout":0}`, 2 * time.Second},
		{"kafka half-open, never answers", "kafka", "timeout", "downstream", `{"timeout":0}`, 10 * time.Second},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := cluster.CreateDB(t)
			f := newFixture(t, "chaos", b.Addr(), dsn)
			f.extraEnv = append(f.extraEnv, "ORDERS_POSTGRES_DSN="+proxiedDSN(t, dsn, c.pg.Listen))
			s := newStream(suiteSeed(t)+uint64(100+i), n)
			svc := f.start()
			start := time.Now()
			wait := produceAsync(b.Addr(), f.topic, s.recs, streamRate, caseLimit)
			f.waitStored(len(s.recs)/5, caseLimit, svc)
			p := c.pg
			if tc.proxy == "kafka" {
				p = c.kafka
			}
			at := f.storedCount()
			toxic(t, p, "fault", tc.typ, tc.stream, tc.attrs)
			time.Sleep(tc.hold)
			f.alive(svc)
			untoxic(t, p, "fault")
			healed := time.Now()
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			tr := f.readTruth(s)
			f.waitLagZero(caseLimit, svc)
			out := f.check(tr, expectDLQ{passes: 1})
			t.Logf("CHAOS %s: fault at %d stored for %s; drained %s after it was removed (%s in all); stored %d of %d, dlq %d of %d, lost %d, duplicated %d, stale %d; peak RSS %d MiB",
				tc.name, at, tc.hold, time.Since(healed).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond),
				out.stored, out.unique, out.dlq, out.invalid, out.lost, out.duplicated, out.stale, f.peakRSS()>>20)
			stop(t, svc)
		})
	}
}
