package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// EnvScreenshots names a directory where the browser test saves screenshots of
// the page, for people to look at; unset saves none.
const envScreenshots = "ORDERS_SCREENSHOT_DIR"

const xssName = `<img src=x onerror=alert(1)>`

// chromium returns the path of a Chromium/Chrome binary, or "".
func chromium() string {
	if p := os.Getenv("CHROME_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// liveServer runs the real stack (Postgres, cache, routes, page) on a loopback
// listener and returns its base URL and a setter for the pipeline stats.
func liveServer(t *testing.T) (string, func(any)) {
	t.Helper()
	ctx := context.Background()
	store := orderscache.NewStore(dbtest.New(t).Store, orderscache.New(16<<20), orderscache.Options{})

	canonical, _ := testkit.Canonical(t)
	evil := canonical
	evil.OrderUID, evil.Payment.Transaction = "xssorder1", "xssorder1"
	evil.Delivery.Name = xssName
	evil.Items = []orders.Item{canonical.Items[0]}
	evil.Items[0].Name = `</td><script>alert(2)</script>`
	if err := orders.Validate(&evil); err != nil {
		t.Fatalf("xss order invalid: %v", err)
	}
	recs := []orders.Record{{Order: canonical, Version: orders.Version{Offset: 1}}, {Order: evil, Version: orders.Version{Offset: 2}}}
	if _, err := store.ApplyBatch(ctx, recs); err != nil {
		t.Fatalf("seed: %v", err)
	}

	var stats atomic.Pointer[any]
	app := ordershttp.NewApp(store, ordershttp.AppConfig{
		HTTP: httpx.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Ops: httpx.Ops{PipelineStats: func(bool) any {
			if p := stats.Load(); p != nil {
				return *p
			}
			return nil
		}},
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done })
	return "http://" + ln.Addr().String(), func(v any) { stats.Store(&v) }
}

func TestBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (apt-get install -y chromium, or set CHROME_BIN): browser test skipped")
	}
	base, setStats := liveServer(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Listen starts the browser on a context without a deadline (a deadline on the
	// first use would bound the browser's life); the steps below get one each.
	var mu sync.Mutex
	var dialogs, exceptions []string
	err := chromedp.Listen(bctx, func(ev any) {
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			mu.Lock()
			dialogs = append(dialogs, e.Message)
			mu.Unlock()
			go func() {
				_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		case *runtime.EventExceptionThrown:
			mu.Lock()
			exceptions = append(exceptions, e.ExceptionDetails.Text)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}

	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	eval := func(expr string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	str := func(a chromedp.Action[string]) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		dir := os.Getenv(envScreenshots)
		if dir == "" {
			return
		}
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
		}
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}

	// 1. deep link to the canonical order
	step("open the canonical order", chromedp.Navigate(base+"/?id=b563feb7b2b84b6test"), chromedp.WaitVisible(chromedp.CSS(`#order .uid`)))
	shot("order")
	uid, name, amount := text(`#order .uid`), text(`#order .delivery dd.strong`), text(`#order .payment dd.strong`)
	items, meta, pipeline, title := text(`#order table.items`), text(`#meta`), text(`#pipeline-status`), str(chromedp.Title())
	if uid != "b563feb7b2b84b6test" || name != "Test Testov" || title != "Order b563feb7b2b84b6test" {
		t.Errorf("header/delivery: uid %q, name %q, title %q", uid, name, title)
	}
	if !strings.Contains(amount, "18.17") {
		t.Errorf("amount %q, want 1817 minor units shown as 18.17", amount)
	}
	for _, want := range []string{"Mascaras", "Vivienne Sabo", "4.53", "3.17", "15.00", "30%"} {
		if !strings.Contains(items, want) {
			t.Errorf("items table lacks %q: %q", want, items)
		}
	}
	if !strings.Contains(meta, "ms") || !(strings.Contains(meta, "cache hit") || strings.Contains(meta, "cache miss")) {
		t.Errorf("meta line %q lacks the response time or cache state", meta)
	}
	if !strings.Contains(pipeline, "no data yet") {
		t.Errorf("pipeline panel without a pipeline: %q", pipeline)
	}

	// 2. search for an unknown order with the keyboard
	eval(`(document.getElementById('q').value = '', 0)`)
	step("search an unknown order",
		chromedp.SendKeys(chromedp.CSS(`#q`), "nosuchorder123"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#message`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#order`)))
	shot("notfound")
	if msg := text(`#message`); !strings.Contains(msg, "No order with id") || !strings.Contains(msg, "nosuchorder123") {
		t.Errorf("not-found message %q", msg)
	}
	if loc := str(chromedp.Location()); !strings.HasSuffix(loc, "/?id=nosuchorder123") {
		t.Errorf("location after a search %q, want a deep link", loc)
	}

	// 3. an order whose fields hold markup is shown literally and runs nothing
	step("open the xss order", chromedp.Navigate(base+"/?id=xssorder1"), chromedp.WaitVisible(chromedp.CSS(`#order .uid`)))
	shot("xss")
	if got := text(`#order .delivery dd.strong`); got != xssName {
		t.Errorf("delivery name shown as %q, want the literal %q", got, xssName)
	}
	if got := text(`#order .item-name`); got != `</td><script>alert(2)</script>` {
		t.Errorf("item name shown as %q", got)
	}
	if n := eval(`document.querySelectorAll('#order img, img[src="x"]').length`); n != 0 {
		t.Errorf("markup from the order became %d img elements", n)
	}
	if n := eval(`document.querySelectorAll('script').length`); n != 1 {
		t.Errorf("%d script elements, want only app.js", n)
	}

	// 4. the live panel renders pipeline stats once there are stages
	setStats(map[string]any{
		"status": "running",
		"stages": []map[string]any{
			{"stage": "decode", "in": 120, "out": 118, "rejected": 2, "errors": 0, "queue_length": 3, "queue_capacity": 1024},
			{"stage": "upsert", "in": 118, "out": 118, "errors": 0, "queue_length": 1000, "queue_capacity": 1024},
		},
		"dlq": 2,
		"lag": map[string]int{"0": 5, "1": 7},
	})
	step("pipeline panel", chromedp.WaitVisible(chromedp.CSS(`#pipeline-body table.stages`)))
	shot("pipeline")
	panel := text(`#pipeline-body`)
	for _, want := range []string{"decode", "upsert", "3/1,024", "12"} {
		if !strings.Contains(panel, want) {
			t.Errorf("pipeline panel lacks %q: %q", want, panel)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(dialogs) > 0 {
		t.Errorf("the page opened dialogs: %q", dialogs)
	}
	if len(exceptions) > 0 {
		t.Errorf("the page threw: %q", exceptions)
	}
}
