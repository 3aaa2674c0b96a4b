package ordershttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	testToken    = "s3cret-token"
	canonicalUID = "b563feb7b2b84b6test"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// server is the real service stack on a fresh database: bun store, otter cache,
// the httpx shell with ops routes, the order routes and the page.
type server struct {
	app   *fiber.App
	store *orderscache.Store
	db    *bun.DB
	log   *fakeLog
}

// fakeLog is the order log of these tests: it gives each write the next version
// of partition 0 and applies it at once through the cached store, as the
// pipeline does after a real append (pipeline/ingest tests the real one). err,
// when set, is returned instead.
type fakeLog struct {
	store *orderscache.Store
	next  atomic.Int64
	err   atomic.Pointer[error]
}

func (f *fakeLog) failWith(err error) { f.err.Store(&err) }

func (f *fakeLog) apply(ctx context.Context, rec orders.Record) (orders.Version, error) {
	if p := f.err.Load(); p != nil && *p != nil {
		return orders.Version{}, *p
	}
	rec.Version = orders.Version{Partition: 0, Offset: f.next.Add(1), Time: time.Now().UnixMilli()}
	if _, err := f.store.ApplyBatch(ctx, []orders.Record{rec}); err != nil {
		return orders.Version{}, err
	}
	return rec.Version, nil
}

func (f *fakeLog) Put(ctx context.Context, _ []byte, o orders.Order) (orders.Version, error) {
	return f.apply(ctx, orders.Record{Order: o})
}

func (f *fakeLog) Delete(ctx context.Context, uid string) (orders.Version, error) {
	if _, _, err := f.store.Get(ctx, uid); err != nil {
		return orders.Version{}, err
	}
	return f.apply(ctx, orders.Record{Order: orders.Order{OrderUID: uid}, Deleted: true})
}

// newServer builds the stack on a fresh database (dbOpts: e.g. dbtest.On a
// dedicated cluster).
func newServer(t testing.TB, opts ordershttp.Options, dbOpts ...dbtest.Option) *server {
	t.Helper()
	db := dbtest.New(t, dbOpts...)
	store := orderscache.NewStore(db.Store, orderscache.New(64<<20), orderscache.Options{})
	fl := &fakeLog{store: store}
	fl.next.Store(1 << 20) // after every seeded version
	if opts.Writer == nil {
		opts.Writer = fl
	}
	app := ordershttp.NewApp(store, ordershttp.AppConfig{
		HTTP:   httpx.Config{Logger: quiet, Registerer: prometheus.NewRegistry()},
		Orders: opts,
	})
	return &server{app: app, store: store, db: db.Bun, log: fl}
}

// withUID returns o under another uid (and transaction).
func withUID(o orders.Order, uid string) orders.Order {
	o.OrderUID = uid
	o.Payment.Transaction = uid
	o.Items = append([]orders.Item(nil), o.Items...)
	return o
}

// seed writes orders as Kafka versions (partition 0, offsets 1..n), one batch each,
// so the listing order is their order here.
func (s *server) seed(t testing.TB, os ...orders.Order) {
	t.Helper()
	for i, o := range os {
		if _, err := s.store.ApplyBatch(context.Background(), []orders.Record{{Order: o, Version: orders.Version{Partition: 0, Offset: int64(i + 1), Time: 1}}}); err != nil {
			t.Fatalf("seed %s: %v", o.OrderUID, err)
		}
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request through app.Test; token "" sends no Authorization.
func (s *server) do(t testing.TB, method, target, token string, body []byte, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantError checks that r is status with a JSON {"error": ...} body and returns it.
func wantError(t testing.TB, what string, r reply, status int) map[string]string {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d (body %.300s)", what, r.status, status, r.body)
	}
	var m map[string]string
	if err := json.Unmarshal(r.body, &m); err != nil || m["error"] == "" {
		t.Fatalf("%s: body is not a JSON error: %.300s", what, r.body)
	}
	return m
}
