package ordershttp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestGetOrder(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	o, raw := testkit.Canonical(t)
	s.seed(t, o)
	s.store.Cache().Invalidate(canonicalUID) // the first read must go to the database

	first := s.do(t, "GET", "/order/"+canonicalUID, "", nil)
	if first.status != 200 || !testkit.SameJSON(t, first.body, raw) {
		t.Fatalf("GET /order: %d %.300s", first.status, first.body)
	}
	if got := first.header.Get("X-Cache"); got != "miss" {
		t.Errorf("first read X-Cache %q, want miss", got)
	}
	if ct := first.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	etag := first.header.Get("ETag")
	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Fatalf("ETag %q is not a quoted strong tag", etag)
	}

	second := s.do(t, "GET", "/api/v1/orders/"+canonicalUID, "", nil)
	if second.status != 200 || !bytes.Equal(second.body, first.body) {
		t.Fatalf("GET /api/v1/orders: %d %.300s", second.status, second.body)
	}
	if got := second.header.Get("X-Cache"); got != "hit" {
		t.Errorf("second read X-Cache %q, want hit", got)
	}
	if second.header.Get("ETag") != etag {
		t.Errorf("ETag changed between reads of the same bytes: %q, %q", etag, second.header.Get("ETag"))
	}

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		r := s.do(t, "GET", "/order/"+canonicalUID, "", nil, "If-None-Match", inm)
		if r.status != 304 || len(r.body) != 0 {
			t.Errorf("If-None-Match %s: status %d, body %q; want 304 and no body", inm, r.status, r.body)
		}
		if r.header.Get("ETag") != etag {
			t.Errorf("304 without the ETag: %q", r.header.Get("ETag"))
		}
	}
	r := s.do(t, "GET", "/order/"+canonicalUID, "", nil, "If-None-Match", `"stale"`)
	if r.status != 200 || !testkit.SameJSON(t, r.body, raw) {
		t.Errorf("stale If-None-Match: %d", r.status)
	}

	// a uid with escaped but valid characters is unescaped before validation
	r = s.do(t, "GET", "/order/b563feb7b2b84b6%74est", "", nil)
	if r.status != 200 || !testkit.SameJSON(t, r.body, raw) {
		t.Errorf("escaped valid uid: %d %.200s", r.status, r.body)
	}
}

func TestGetOrderErrors(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/order/nosuchorder123", 404},
		{"/api/v1/orders/nosuchorder123", 404},
		{"/order/" + strings.Repeat("x", 64), 404},
		{"/order/" + strings.Repeat("x", 65), 400},
		{"/api/v1/orders/" + strings.Repeat("x", 65), 400},
		{"/order/bad%20uid%3Cscript%3E", 400},
		{"/order/a%2Fb", 400},
		{"/order/dots.not.allowed", 400},
	} {
		r := s.do(t, "GET", tc.path, "", nil)
		wantError(t, "GET "+tc.path, r, tc.status)
		if r.header.Get("X-Request-ID") == "" {
			t.Errorf("GET %s: no X-Request-ID", tc.path)
		}
	}
	// the 404 is remembered briefly but the order appears once written
	o, _ := testkit.Canonical(t)
	s.seed(t, withUID(o, "nosuchorder123"))
	if r := s.do(t, "GET", "/order/nosuchorder123", "", nil); r.status != 200 {
		t.Errorf("order written after a 404: status %d", r.status)
	}
}

// TestGetOrderDatabaseDown stops PostgreSQL: cached orders are still served, a
// miss answers 503 with a JSON error instead of hanging or leaking the cause.
func TestGetOrderDatabaseDown(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{})
	s := newServer(t, ordershttp.Options{APIToken: testToken}, dbtest.On(cluster))
	o, raw := testkit.Canonical(t)
	s.seed(t, o)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Start() }) // so the database can be dropped

	if r := s.do(t, "GET", "/order/"+canonicalUID, "", nil); r.status != 200 || !testkit.SameJSON(t, r.body, raw) || r.header.Get("X-Cache") != "hit" {
		t.Errorf("cached order while the database is down: %d %s", r.status, r.header.Get("X-Cache"))
	}
	m := wantError(t, "miss while the database is down", s.do(t, "GET", "/order/notcached42", "", nil), 503)
	if strings.Contains(m["error"], "127.0.0.1") || strings.Contains(m["error"], "dial") {
		t.Errorf("503 leaks internals: %q", m["error"])
	}
	wantError(t, "list while the database is down", s.do(t, "GET", "/api/v1/orders", "", nil), 503)
}

type listPage struct {
	Orders     []map[string]any `json:"orders"`
	NextCursor *string          `json:"next_cursor"`
}

func TestList(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})

	r := s.do(t, "GET", "/api/v1/orders", "", nil)
	if r.status != 200 || string(r.body) != `{"orders":[],"next_cursor":""}` {
		t.Fatalf("empty listing: %d %s", r.status, r.body)
	}

	o, _ := testkit.Canonical(t)
	var all []orders.Order
	for i := 0; i < 25; i++ {
		all = append(all, withUID(o, fmt.Sprintf("list%03d", i)))
	}
	s.seed(t, all...)

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := s.do(t, "GET", "/api/v1/orders?limit=10&cursor="+cursor, "", nil)
		var p listPage
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil || p.NextCursor == nil {
			t.Fatalf("page %d: %d %.300s", pages, r.status, r.body)
		}
		if len(p.Orders) > 10 {
			t.Fatalf("page of %d orders over the limit", len(p.Orders))
		}
		for _, o := range p.Orders {
			uid, _ := o["order_uid"].(string)
			got = append(got, uid)
		}
		if *p.NextCursor == "" {
			break
		}
		cursor = *p.NextCursor
	}
	if len(got) != 25 {
		t.Fatalf("pages covered %d orders, want 25: %v", len(got), got)
	}
	for i, uid := range got {
		if want := fmt.Sprintf("list%03d", 24-i); uid != want {
			t.Fatalf("listing position %d is %s, want %s (newest first): %v", i, uid, want, got)
		}
	}

	var p listPage
	r = s.do(t, "GET", "/api/v1/orders", "", nil)
	if err := json.Unmarshal(r.body, &p); err != nil || len(p.Orders) != 25 || *p.NextCursor != "" {
		t.Errorf("default limit: %d orders, cursor %v", len(p.Orders), p.NextCursor)
	}
	r = s.do(t, "GET", "/api/v1/orders?limit=1000", "", nil)
	if r.status != 200 {
		t.Errorf("limit=1000: %d", r.status)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=ten", "cursor=%21%21not-a-cursor", "cursor=zzzz"} {
		wantError(t, "list ?"+q, s.do(t, "GET", "/api/v1/orders?"+q, "", nil), 400)
	}
}

func TestPut(t *testing.T) {
	o, raw := testkit.Canonical(t)
	upd := bytes.Replace(raw, []byte("WBILMTESTTRACK"), []byte("UPDATEDTRACK"), 1)

	disabled := newServer(t, ordershttp.Options{})
	wantError(t, "PUT with no token configured", disabled.do(t, "PUT", "/api/v1/orders/"+canonicalUID, testToken, upd), 403)
	wantError(t, "DELETE with no token configured", disabled.do(t, "DELETE", "/api/v1/orders/"+canonicalUID, testToken, nil), 403)
	wantError(t, "warmup with no token configured", disabled.do(t, "POST", "/api/v1/cache/warmup", testToken, nil), 403)

	s := newServer(t, ordershttp.Options{APIToken: testToken, MaxBodyBytes: 8 << 10})
	s.seed(t, o)
	path := "/api/v1/orders/" + canonicalUID

	r := s.do(t, "PUT", path, "", upd)
	wantError(t, "PUT without token", r, 401)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
	}
	r = s.do(t, "PUT", path, "wrong", upd)
	wantError(t, "PUT with a wrong token", r, 401)
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("wrong token challenge: %q", r.header.Get("WWW-Authenticate"))
	}
	wantError(t, "PUT with a basic auth header", s.do(t, "PUT", path, "", upd, "Authorization", "Basic "+testToken), 401)

	wantError(t, "PUT uid mismatch", s.do(t, "PUT", "/api/v1/orders/other"+canonicalUID, testToken, upd), 400)
	wantError(t, "PUT bad path uid", s.do(t, "PUT", "/api/v1/orders/bad%20uid", testToken, upd), 400)
	wantError(t, "PUT malformed JSON", s.do(t, "PUT", path, testToken, []byte(`{"order_uid":`)), 400)
	wantError(t, "PUT unknown field", s.do(t, "PUT", path, testToken, bytes.Replace(raw, []byte(`"entry"`), []byte(`"entri"`), 1)), 400)
	bad := bytes.Replace(raw, []byte(`"goods_total": 317`), []byte(`"goods_total": 999`), 1)
	m := wantError(t, "PUT inconsistent totals", s.do(t, "PUT", path, testToken, bad), 422)
	if m["field"] != "payment.goods_total" || !strings.Contains(m["error"], "payment.goods_total") {
		t.Errorf("422 does not name the field: %v", m)
	}
	big := append(bytes.TrimRight(raw, "}\n "), []byte(`,"x":"`+strings.Repeat("a", 9<<10)+`"}`)...)
	wantError(t, "PUT over MaxBodyBytes", s.do(t, "PUT", path, testToken, big), 413)

	// nothing above changed the stored order
	if r := s.do(t, "GET", "/order/"+canonicalUID, "", nil); !testkit.SameJSON(t, r.body, raw) {
		t.Fatalf("a rejected PUT changed the order: %.300s", r.body)
	}

	r = s.do(t, "PUT", path, testToken, upd)
	if r.status != 200 || !testkit.SameJSON(t, r.body, upd) {
		t.Fatalf("valid PUT: %d %.300s", r.status, r.body)
	}
	putVersion := r.header.Get("X-Order-Version")
	if _, err := orders.ParseVersion(putVersion); err != nil || r.header.Get("ETag") != `"`+putVersion+`"` {
		t.Errorf("PUT answer: X-Order-Version %q, ETag %q", putVersion, r.header.Get("ETag"))
	}
	r = s.do(t, "GET", "/order/"+canonicalUID, "", nil)
	if r.status != 200 || !testkit.SameJSON(t, r.body, upd) {
		t.Fatalf("GET after PUT does not show the update: %.300s", r.body)
	}
	if r.header.Get("X-Order-Version") != putVersion || r.header.Get("ETag") != `"`+putVersion+`"` {
		t.Errorf("GET after PUT: X-Order-Version %q ETag %q, want the PUT's %q", r.header.Get("X-Order-Version"), r.header.Get("ETag"), putVersion)
	}
	s.store.Cache().Invalidate(canonicalUID)
	if r := s.do(t, "GET", "/order/"+canonicalUID, "", nil); r.header.Get("X-Cache") != "miss" || !testkit.SameJSON(t, r.body, upd) {
		t.Fatalf("PUT not durable: %s %.300s", r.header.Get("X-Cache"), r.body)
	}

	// a PUT may create an order
	created := bytes.ReplaceAll(raw, []byte(canonicalUID), []byte("createdbyput1"))
	if r := s.do(t, "PUT", "/api/v1/orders/createdbyput1", testToken, created); r.status != 200 {
		t.Fatalf("PUT of a new order: %d %.300s", r.status, r.body)
	}
	if r := s.do(t, "GET", "/order/createdbyput1", "", nil); r.status != 200 || !testkit.SameJSON(t, r.body, created) {
		t.Fatalf("GET of a PUT-created order: %d", r.status)
	}
}

func TestDelete(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	o, _ := testkit.Canonical(t)
	s.seed(t, o)
	path := "/api/v1/orders/" + canonicalUID

	if r := s.do(t, "GET", "/order/"+canonicalUID, "", nil); r.status != 200 || r.header.Get("X-Cache") != "hit" {
		t.Fatalf("seeded order not cached: %d %s", r.status, r.header.Get("X-Cache"))
	}
	wantError(t, "DELETE without token", s.do(t, "DELETE", path, "", nil), 401)
	wantError(t, "DELETE bad uid", s.do(t, "DELETE", "/api/v1/orders/"+strings.Repeat("z", 65), testToken, nil), 400)
	r := s.do(t, "DELETE", path, testToken, nil)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("DELETE: %d %q", r.status, r.body)
	}
	if _, err := orders.ParseVersion(r.header.Get("X-Order-Version")); err != nil {
		t.Errorf("DELETE answer without a version: %q", r.header.Get("X-Order-Version"))
	}
	wantError(t, "GET after DELETE (cache invalidated)", s.do(t, "GET", "/order/"+canonicalUID, "", nil), 404)
	wantError(t, "DELETE twice", s.do(t, "DELETE", path, testToken, nil), 404)
}

func TestWriteOutcomes(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	o, raw := testkit.Canonical(t)
	s.seed(t, o)
	path := "/api/v1/orders/" + canonicalUID

	s.log.failWith(&orders.PendingError{UID: canonicalUID, Version: orders.Version{Partition: 2, Offset: 77}})
	for _, m := range []string{"PUT", "DELETE"} {
		r := s.do(t, m, path, testToken, raw)
		if r.status != 202 || r.header.Get("Location") != path || r.header.Get("X-Order-Version") != "2.77" {
			t.Errorf("%s not applied in time: %d Location %q version %q, want 202 %s 2.77", m, r.status, r.header.Get("Location"), r.header.Get("X-Order-Version"), path)
		}
	}
	s.log.failWith(fmt.Errorf("append: %w", orders.ErrLogUnavailable))
	for _, m := range []string{"PUT", "DELETE"} {
		r := wantError(t, m+" with the broker down", s.do(t, m, path, testToken, raw), 503)
		if r["error"] == "" {
			t.Errorf("%s 503 without a reason", m)
		}
	}
	if r := s.do(t, "PUT", path, testToken, raw); r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	s.log.failWith(&orders.RejectedError{Class: "data", Reason: "check constraint"})
	if m := wantError(t, "PUT rejected by the pipeline", s.do(t, "PUT", path, testToken, raw), 422); !strings.Contains(m["error"], "check constraint") {
		t.Errorf("422 without the reason: %v", m)
	}
	s.log.failWith(nil)
	if r := s.do(t, "PUT", path, testToken, raw); r.status != 200 {
		t.Errorf("PUT after the failures: %d", r.status)
	}
}

func TestCacheEndpoints(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	o, _ := testkit.Canonical(t)
	s.seed(t, o, withUID(o, "second1"))
	s.store.Cache().Invalidate(canonicalUID)
	s.store.Cache().Invalidate("second1")

	s.do(t, "GET", "/order/"+canonicalUID, "", nil) // miss
	s.do(t, "GET", "/order/"+canonicalUID, "", nil) // hit
	r := s.do(t, "GET", "/api/v1/cache/stats", "", nil)
	var st map[string]float64
	if r.status != 200 || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("cache stats: %d %s", r.status, r.body)
	}
	for _, k := range []string{"entries", "bytes", "max_bytes", "hits", "misses", "hit_ratio"} {
		if _, ok := st[k]; !ok {
			t.Errorf("cache stats lack %q: %s", k, r.body)
		}
	}
	if st["hits"] < 1 || st["misses"] < 1 || st["max_bytes"] != 64<<20 {
		t.Errorf("cache stats do not count the reads: %s", r.body)
	}

	wantError(t, "warmup without token", s.do(t, "POST", "/api/v1/cache/warmup", "", nil), 401)
	r = s.do(t, "POST", "/api/v1/cache/warmup", testToken, nil)
	var w struct{ Loaded *int }
	if r.status != 200 || json.Unmarshal(r.body, &w) != nil || w.Loaded == nil || *w.Loaded != 2 {
		t.Fatalf("warmup: %d %s", r.status, r.body)
	}
	if r := s.do(t, "GET", "/order/second1", "", nil); r.header.Get("X-Cache") != "hit" {
		t.Errorf("order not cached after warmup: X-Cache %q", r.header.Get("X-Cache"))
	}
}

func TestOpenAPIServed(t *testing.T) {
	s := newServer(t, ordershttp.Options{})
	r := s.do(t, "GET", "/api/v1/openapi.yaml", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, ordershttp.OpenAPI) || !strings.Contains(r.header.Get("Content-Type"), "yaml") {
		t.Fatalf("openapi: %d %s", r.status, r.header.Get("Content-Type"))
	}
}
