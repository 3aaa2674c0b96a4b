package ordershttp_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
)

// slowLister serves list pages only when release lets them go.
type slowLister struct {
	entered chan struct{}
	release chan struct{}
}

func (s *slowLister) GetJSON(context.Context, string) (*orderscache.Entry, bool, error) {
	return nil, false, orders.ErrNotFound
}

func (s *slowLister) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	s.entered <- struct{}{}
	<-s.release
	return orders.Page{}, nil
}

func (s *slowLister) Warmup(context.Context) (int, error) { return 0, nil }

// List pages beyond ListConcurrency wait ListWait, then get 503 with
// Retry-After instead of queueing.
func TestListPagesShedPastTheirConcurrency(t *testing.T) {
	svc := &slowLister{entered: make(chan struct{}, 4), release: make(chan struct{})}
	app := ordershttp.NewApp(svc, ordershttp.AppConfig{
		HTTP:   httpx.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Orders: ordershttp.Options{CacheStats: func() any { return nil }, ListConcurrency: 1, ListWait: 20 * time.Millisecond},
	})
	first := make(chan int, 1)
	go func() {
		resp, err := app.Test(httptest.NewRequest("GET", "/api/v1/orders?limit=1000", nil), -1)
		if err != nil {
			first <- 0
			return
		}
		first <- resp.StatusCode
	}()
	<-svc.entered // the first page holds the only slot
	resp, err := app.Test(httptest.NewRequest("GET", "/api/v1/orders?limit=1000", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a page past the concurrency: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(svc.release)
	if code := <-first; code != 200 {
		t.Fatalf("the page holding the slot: %d, want 200", code)
	}
	resp, err = app.Test(httptest.NewRequest("GET", "/api/v1/orders?limit=10", nil), -1)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a page once the slot is free: %v %v", resp.StatusCode, err)
	}
}
