package web_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
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

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/kafkaview"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
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

// browserToken is the API token of the live server.
const browserToken = "browser-token"

// listed is how many orders the live server holds besides the canonical and
// the xss order: with them, three list pages of 20 (20, 20, 5).
const listed = 43

// groupLag is the lag of the live server's group member.
const groupLag = 3

// letter is one dead letter of the live server's DLQ.
type letter struct {
	key, class, reason, value string
	sourceOffset              int64
}

// letters are the live server's dead letters, oldest first (a second apart).
var letters = []letter{
	{"bad-1", "decode", "invalid character 'x' looking for beginning of value", `x{"secret":"value-one"}`, 10},
	{"bad-2", "validation", "payment.currency: want 3 upper-case letters", `{"secret":"value-two"}`, 11},
	{"bad-3", "data", "23505 duplicate key", `{"secret":"value-three"}`, 12},
	{"bad-4", "validation", `<img src=x onerror=alert(3)>`, `{"secret":"<b>value-four</b>"}`, 13},
}

// outsideHeader is an original header of every letter, from the producer: it
// may carry personal data, so the page shows it only with the token.
var outsideHeader = [2]string{"origin-user", "alice@example.com"}

// letterHeaders are the DLQ headers of l, as the pipeline writes them (the
// original header first).
func letterHeaders(l letter, sourceTopic string) [][2]string {
	return [][2]string{
		outsideHeader,
		{kafkaedge.HeaderError, l.reason},
		{kafkaedge.HeaderErrorClass, l.class},
		{kafkaedge.HeaderStage, "validate"},
		{kafkaedge.HeaderSourceTopic, sourceTopic},
		{kafkaedge.HeaderSourcePartition, "0"},
		{kafkaedge.HeaderSourceOffset, fmt.Sprint(l.sourceOffset)},
		{kafkaedge.HeaderAttempts, "1"},
	}
}

// kafkaViews returns the live server's Kafka views: with TEST_KAFKA_BROKERS, the
// service's own readers on a fresh DLQ topic holding letters and a group with
// one static member ("web-a"); without, in-memory readers of the same data.
func kafkaViews(t *testing.T) kafkaview.Options {
	t.Helper()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	if os.Getenv(testenv.KafkaBrokersEnv) == "" {
		memberLag := int64(groupLag)
		read := kafkaview.DLQRead{Total: int64(len(letters))}
		for i, l := range letters {
			so := l.sourceOffset
			sp := int32(0)
			kl := kafkaview.Letter{
				Partition: 0, Offset: int64(i), Time: base.Add(time.Duration(i) * time.Second), Key: l.key,
				Error: l.reason, Class: l.class, Stage: "validate", SourceTopic: "orders",
				SourcePartition: &sp, SourceOffset: &so, Attempts: 1, ValueBytes: len(l.value), Value: []byte(l.value),
			}
			for _, h := range letterHeaders(l, "orders") {
				kl.Headers = append(kl.Headers, kafkaview.Header{Key: h[0], Value: h[1]})
			}
			read.Letters = append(read.Letters, kl)
		}
		return kafkaview.Options{
			DLQTopic: "orders-dlq", InstanceID: "web-a",
			DLQ: func(context.Context, int) (kafkaview.DLQRead, error) { return read, nil },
			Group: func(context.Context) (kafkaview.Group, error) {
				return kafkaview.Group{ID: "order-service", State: "Stable", Members: []kafkaview.Member{
					{ClientID: "rdkafka", InstanceID: "web-a", MemberID: "web-a-1", Host: "/127.0.0.1", Partitions: map[string][]int32{"orders": {0, 1}}, Lag: &memberLag},
				}}, nil
			},
		}
	}
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "orders")
	dlq, group := topic+"-dlq", topic+"-group"
	testenv.KafkaCreateTopic(t, brokers, topic, 2)
	testenv.KafkaCreateTopic(t, brokers, dlq, 1)
	var recs []*kgo.Record
	for i, l := range letters {
		r := &kgo.Record{Key: []byte(l.key), Value: []byte(l.value), Timestamp: base.Add(time.Duration(i) * time.Second)}
		for _, h := range letterHeaders(l, topic) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		recs = append(recs, r)
	}
	testenv.KafkaProduce(t, brokers, dlq, recs...)

	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": group, "group.instance.id": "web-a", "enable.metrics.push": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c.Poll(100)
		if parts, _ := c.Assignment(); len(parts) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the group member got no assignment within 30 s")
		}
	}
	// groupLag records not consumed: committed at 0, the member's lag.
	var input []*kgo.Record
	for i := range groupLag {
		input = append(input, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	testenv.KafkaProduce(t, brokers, topic, input...)
	if _, err := c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: 0}, {Topic: &topic, Partition: 1, Offset: 0}}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// The member keeps its assignment without polling: its session (45 s) outlives the test.
	return kafkaedge.Views(kafkaedge.Config{Brokers: brokers, DLQTopic: dlq, GroupID: group, InstanceID: "web-a"})
}

// readGate holds the live server's dead-letter reads while closed, so that
// the test can change the token while a read is in flight.
type readGate struct {
	hold    atomic.Pointer[chan struct{}] // set: reads wait for it to close
	entered chan struct{}                 // a read waits on hold
}

// close makes the reads wait until the returned function is called.
func (g *readGate) close() (open func()) {
	select { // forget a read entered before
	case <-g.entered:
	default:
	}
	ch := make(chan struct{})
	g.hold.Store(&ch)
	return func() { g.hold.Store(nil); close(ch) }
}

// wrap returns read held by the gate.
func (g *readGate) wrap(read kafkaview.DLQReader) kafkaview.DLQReader {
	return func(ctx context.Context, n int) (kafkaview.DLQRead, error) {
		if h := g.hold.Load(); h != nil {
			select {
			case g.entered <- struct{}{}:
			default:
			}
			select {
			case <-*h:
			case <-ctx.Done():
				return kafkaview.DLQRead{}, ctx.Err()
			}
		}
		return read(ctx, n)
	}
}

// liveServer runs the real stack (Postgres, cache, routes, page) on a loopback
// listener and returns its base URL, a setter for the pipeline stats and the
// gate of its dead-letter reads. It holds the canonical order, an order whose
// fields are markup, and listed more ("web-order-00" ... newest last).
func liveServer(t *testing.T) (string, func(any), *readGate) {
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
	for i := range listed {
		o := canonical
		o.OrderUID = fmt.Sprintf("web-order-%02d", i)
		o.Payment.Transaction = o.OrderUID
		o.CustomerID = fmt.Sprintf("customer-%02d", i)
		recs = append(recs, orders.Record{Order: o, Version: orders.Version{Offset: int64(3 + i)}})
	}
	for _, r := range recs { // one batch each: the listing's order is theirs
		if _, err := store.ApplyBatch(ctx, []orders.Record{r}); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}

	var stats atomic.Pointer[any]
	gate := &readGate{entered: make(chan struct{}, 1)}
	views := kafkaViews(t)
	views.DLQ = gate.wrap(views.DLQ)
	views.TTL = 10 * time.Millisecond // a refresh reads again, through the gate
	app := ordershttp.NewApp(store, ordershttp.AppConfig{
		HTTP: httpx.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Ops: httpx.Ops{
			PipelineStats: func(bool) any {
				if p := stats.Load(); p != nil {
					return *p
				}
				return nil
			},
			Trusted: ordershttp.HasToken(browserToken),
		},
		Kafka: views,
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done })
	return "http://" + ln.Addr().String(), func(v any) { stats.Store(&v) }, gate
}

// checkShot decodes a full-page PNG screenshot and checks that the page has
// its width and that the element box (document coordinates) holds a drawn
// layout: at least 2 % of its pixels differ from its most common colour
// (background), in at least 4 colours. It returns a reason when not.
func checkShot(pngBytes []byte, width int, box [4]float64) string {
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		return "not a PNG: " + err.Error()
	}
	b := img.Bounds()
	if b.Dx() != width || b.Dy() < 300 {
		return fmt.Sprintf("screenshot is %dx%d, want %d wide and at least 300 high", b.Dx(), b.Dy(), width)
	}
	r := image.Rect(int(box[0]), int(box[1]), int(box[0]+box[2]), int(box[1]+box[3])).Intersect(b)
	if r.Dx() < 100 || r.Dy() < 40 {
		return fmt.Sprintf("element box %v is too small or off the page %v", r, b)
	}
	counts := map[[4]uint32]int{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			counts[[4]uint32{cr >> 8, cg >> 8, cb >> 8, ca >> 8}]++
		}
	}
	most, total := 0, r.Dx()*r.Dy()
	for _, n := range counts {
		most = max(most, n)
	}
	if len(counts) < 4 || total-most < total/50 {
		return fmt.Sprintf("element box %v is blank: %d colours, %d of %d pixels off the background", r, len(counts), total-most, total)
	}
	return ""
}

func TestBrowser(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (apt-get install -y chromium, or set CHROME_BIN): browser test skipped")
	}
	base, setStats, gate := liveServer(t)

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
	var dialogs, exceptions, consoleErrors []string
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
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				mu.Lock()
				consoleErrors = append(consoleErrors, string(e.Type))
				mu.Unlock()
			}
		case *cdplog.EventEntryAdded: // CSP violations, failed loads, browser errors
			if strings.HasSuffix(e.Entry.URL, "/api/v1/orders/nosuchorder123") {
				return // the lookup of an unknown order: its 404 is the answer step 2 expects
			}
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				mu.Lock()
				consoleErrors = append(consoleErrors, string(e.Entry.Source)+": "+e.Entry.Text)
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	// Every CSP violation is also counted by the page itself.
	step0, cancel0 := context.WithTimeout(bctx, 30*time.Second)
	if _, err := chromedp.Call(step0, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });`}); err != nil {
		t.Fatalf("install the CSP listener: %v", err)
	}
	cancel0()

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
	// shot takes a full-page screenshot, checks that the element sel is drawn
	// in it (checkShot), and saves it under ORDERS_SCREENSHOT_DIR when set.
	shot := func(name, sel string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		box, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(function () {
			var r = document.querySelector(`+"`"+sel+"`"+`).getBoundingClientRect();
			return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
		})()`))
		if err != nil || len(box) != 4 {
			t.Fatalf("screenshot %s: box of %s: %v %v", name, sel, box, err)
		}
		shotPNG, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if why := checkShot(shotPNG, 1280, [4]float64(box)); why != "" {
			t.Errorf("screenshot %s (%s): %s", name, sel, why)
		}
		if dir := os.Getenv(envScreenshots); dir != "" {
			if err := os.WriteFile(filepath.Join(dir, name+".png"), shotPNG, 0o644); err != nil {
				t.Errorf("screenshot %s: %v", name, err)
			}
		}
	}
	strs := func(expr string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	rows := func() []string {
		t.Helper()
		return strs(`Array.from(document.querySelectorAll('#list-rows tr th a')).map(function (a) { return a.textContent; })`)
	}
	wantRows := func(from, to int) []string { // web-order-from down to web-order-to
		var out []string
		for i := from; i >= to; i-- {
			out = append(out, fmt.Sprintf("web-order-%02d", i))
		}
		return out
	}
	cspCheck := func(where string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp || ['no listener']`))
		if err != nil {
			t.Fatalf("csp check: %v", err)
		}
		if len(v) > 0 {
			t.Errorf("%s: CSP violations %q", where, v)
		}
	}

	// 0. the first page: the newest orders, then two more pages with Load more
	step("open the list", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#list-rows tr`)))
	if got, want := rows(), wantRows(listed-1, listed-20); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("first page %v, want %v", got, want)
	}
	if n := eval(`document.querySelectorAll('#list-table thead th[scope=col]').length`); n != 6 {
		t.Errorf("%d column headers, want 6", n)
	}
	shot("list", "#list-view")
	first := text(`#list-rows tr:first-child`)
	for _, want := range []string{"customer-42", "WBILMTESTTRACK", "18.17"} {
		if !strings.Contains(first, want) {
			t.Errorf("newest row %q lacks %q", first, want)
		}
	}
	step("load the second page", chromedp.Focus(chromedp.CSS(`#load-more`)), chromedp.KeyEvent(kb.Enter),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#list-rows tr').length === 40`))
	if got, want := rows(), wantRows(listed-1, listed-40); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after Load more %v, want %v", got, want)
	}
	if st := text(`#status`); !strings.Contains(st, "20 more orders loaded") {
		t.Errorf("status after Load more %q", st)
	}
	step("load the last page", chromedp.Click(chromedp.CSS(`#load-more`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#list-rows tr').length === 45`),
		chromedp.WaitNotVisible(chromedp.CSS(`#load-more`)))
	got := rows()
	if want := append(wantRows(listed-1, 0), "xssorder1", "b563feb7b2b84b6test"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("all pages %v, want %v", got, want)
	}
	if st := text(`#list-status`); !strings.Contains(st, "45 orders shown") || !strings.Contains(st, "all of them") {
		t.Errorf("list status at the end %q", st)
	}
	if f := str(chromedp.Evaluate[string](`document.activeElement.textContent`)); f != "web-order-02" {
		t.Errorf("focus after the last page on %q, want the first order loaded (web-order-02)", f)
	}

	// a row opens its order; back returns to the list as it was
	step("open a row", chromedp.Click(chromedp.CSS(`#list-rows a[href="?id=web-order-30"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#order .uid`)))
	if uid, loc := text(`#order .uid`), str(chromedp.Location()); uid != "web-order-30" || !strings.HasSuffix(loc, "/?id=web-order-30") {
		t.Errorf("row opened %q at %q", uid, loc)
	}
	if eval(`document.activeElement === document.getElementById('order-view') ? 1 : 0`) != 1 {
		t.Errorf("focus did not move to the order")
	}
	step("back to the list", chromedp.Evaluate[chromedp.Void](`history.back()`), chromedp.WaitVisible(chromedp.CSS(`#list-view`)))
	if n := len(rows()); n != 45 || str(chromedp.Location()) != base+"/" {
		t.Errorf("after back: %d rows at %s, want the 45 loaded at /", n, str(chromedp.Location()))
	}
	cspCheck("list")

	// 1. deep link to the canonical order
	step("open the canonical order", chromedp.Navigate(base+"/?id=b563feb7b2b84b6test"), chromedp.WaitVisible(chromedp.CSS(`#order .uid`)))
	shot("order", "#order")
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
	shot("notfound", "#message")
	if msg := text(`#message`); !strings.Contains(msg, "No order with id") || !strings.Contains(msg, "nosuchorder123") {
		t.Errorf("not-found message %q", msg)
	}
	if loc := str(chromedp.Location()); !strings.HasSuffix(loc, "/?id=nosuchorder123") {
		t.Errorf("location after a search %q, want a deep link", loc)
	}

	// 3. an order whose fields hold markup is shown literally and runs nothing
	step("open the xss order", chromedp.Navigate(base+"/?id=xssorder1"), chromedp.WaitVisible(chromedp.CSS(`#order .uid`)))
	shot("xss", "#order")
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
	cspCheck("xss order")

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
	shot("pipeline", ".pipeline")
	panel := text(`#pipeline-body`)
	for _, want := range []string{"decode", "upsert", "3/1,024", "12"} {
		if !strings.Contains(panel, want) {
			t.Errorf("pipeline panel lacks %q: %q", want, panel)
		}
	}

	// 5. the consumer group: this instance among the members
	step("group panel", chromedp.WaitVisible(chromedp.CSS(`#group-members li`)))
	if g := text(`.pipeline`); !strings.Contains(g, "web-a") || !strings.Contains(g, "this instance") || !strings.Contains(g, "Stable") || !strings.Contains(g, ": 0, 1") || !strings.Contains(g, "lag 3") {
		t.Errorf("group panel %q lacks the member web-a (this instance), the state, its partitions or its lag", g)
	}

	// 6. the dead letters: counts and reasons, no values without the token
	step("open the dead letters", chromedp.Click(chromedp.CSS(`#nav-dlq`)), chromedp.WaitVisible(chromedp.CSS(`#dlq-table`)))
	if loc := str(chromedp.Location()); !strings.HasSuffix(loc, "/?view=dlq") {
		t.Errorf("dead letters at %q, want ?view=dlq", loc)
	}
	if eval(`document.activeElement === document.getElementById('dlq-title') ? 1 : 0`) != 1 {
		t.Errorf("focus did not move to the dead letters' heading")
	}
	shot("dlq", "#dlq-view")
	summary, table := text(`#dlq-summary`), text(`#dlq-rows`)
	for _, want := range []string{"4", "validation", "decode", "data"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary %q lacks %q", summary, want)
		}
	}
	if n := eval(`Number(Array.from(document.querySelectorAll('.class-counts tbody tr')).filter(function (r) { return r.cells[0].textContent === 'validation'; })[0].cells[1].textContent)`); n != 2 {
		t.Errorf("validation count %d, want 2", n)
	}
	var keys []string
	for i := len(letters) - 1; i >= 0; i-- {
		keys = append(keys, letters[i].key)
		if !strings.Contains(table, letters[i].reason) {
			t.Errorf("letter %s: reason %q not shown as text in %q", letters[i].key, letters[i].reason, table)
		}
	}
	if shown := strs(`Array.from(document.querySelectorAll('#dlq-rows tr')).map(function (r) { return r.cells[4].textContent; })`); strings.Join(shown, ",") != strings.Join(keys, ",") {
		t.Errorf("letters %v, want the newest first %v", shown, keys)
	}
	if n := eval(`document.querySelectorAll('#dlq-view img, #dlq-view b, pre.value').length`); n != 0 {
		t.Errorf("%d img/b/value elements in the dead letters without the token", n)
	}
	if body := text(`body`); strings.Contains(body, "secret") || !strings.Contains(text(`#dlq-status`), "enter the API token") {
		t.Errorf("without the token: values shown or no hint: %q", text(`#dlq-status`))
	}
	step("headers open with the keyboard", chromedp.Focus(chromedp.CSS(`#dlq-rows tr:first-child summary`)), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#dlq-rows tr:first-child dl.headers`)))
	if h := text(`#dlq-rows tr:first-child dl.headers`); !strings.Contains(h, kafkaedge.HeaderSourceOffset) || !strings.Contains(h, "13") {
		t.Errorf("headers %q", h)
	}
	headersText := func() string {
		return strings.Join(strs(`Array.from(document.querySelectorAll('#dlq-rows dl.headers')).map(function (d) { return d.textContent; })`), " ")
	}
	if h := headersText(); strings.Contains(h, outsideHeader[0]) || strings.Contains(h, outsideHeader[1]) {
		t.Errorf("an original header shown without the token: %q", h)
	}

	step("enter the token", chromedp.SendKeys(chromedp.CSS(`#token`), browserToken+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`pre.value`)))
	shot("dlq-token", "#dlq-table")
	if values := strs(`Array.from(document.querySelectorAll('pre.value')).map(function (p) { return p.textContent; })`); len(values) != len(letters) || values[0] != letters[len(letters)-1].value {
		t.Errorf("values with the token %q", values)
	}
	if st := text(`#dlq-status`); !strings.Contains(st, "token accepted") {
		t.Errorf("status with the token %q", st)
	}
	if h := headersText(); strings.Count(h, outsideHeader[1]) != len(letters) {
		t.Errorf("the original header not shown with the token: %q", h)
	}
	step("forget the token", chromedp.Click(chromedp.CSS(`#token-forget`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('pre.value').length === 0 && /enter the API token/.test(document.getElementById('dlq-status').textContent)`))
	if n := eval(`document.querySelectorAll('#dlq-view img, #dlq-view b').length`); n != 0 {
		t.Errorf("markup from a letter became %d elements", n)
	}
	// The token field cannot be submitted natively (before app.js): no name, a POST form.
	if eval(`(function () { var i = document.getElementById('token'); return i.name === '' && !i.hasAttribute('name') && i.form.method === 'post' ? 1 : 0; })()`) != 1 {
		t.Errorf("the token field has a name or its form is not a POST form")
	}

	// 7. the token changes while a read is in flight: the answer shown is the
	// one read with the new token (the read in flight is dropped), in both directions.
	inFlight := func() {
		t.Helper()
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the refresh did not read the dead letters within 10 s")
		}
	}
	open := gate.close()
	step("refresh, held", chromedp.Click(chromedp.CSS(`#dlq-refresh`)))
	inFlight()
	step("enter the token while reading", chromedp.SendKeys(chromedp.CSS(`#token`), browserToken+kb.Enter))
	open()
	step("values with the token entered while reading",
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('pre.value').length === `+fmt.Sprint(len(letters))+
			` && /token accepted/.test(document.getElementById('dlq-status').textContent)`))
	open = gate.close()
	step("refresh with the token, held", chromedp.Click(chromedp.CSS(`#dlq-refresh`)))
	inFlight()
	step("forget the token while reading", chromedp.Click(chromedp.CSS(`#token-forget`)))
	open()
	step("no values once the token is forgotten while reading",
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('pre.value').length === 0 && /enter the API token/.test(document.getElementById('dlq-status').textContent)`))
	if st := text(`#dlq-status`); strings.Contains(st, "not accepted") {
		t.Errorf("status after forgetting the token %q", st)
	}
	step("back to the list by the nav", chromedp.Click(chromedp.CSS(`#nav-orders`)), chromedp.WaitVisible(chromedp.CSS(`#list-rows tr`)))
	cspCheck("dead letters")

	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("console errors and warnings: %q", consoleErrors)
	}
	if len(dialogs) > 0 {
		t.Errorf("the page opened dialogs: %q", dialogs)
	}
	if len(exceptions) > 0 {
		t.Errorf("the page threw: %q", exceptions)
	}
}

// TestCheckShotFindsBlankAndDrawn: the screenshot check tells a blank region
// from one with drawn content, and a page of the wrong width.
func TestCheckShotFindsBlankAndDrawn(t *testing.T) {
	encode := func(img image.Image) []byte {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	img := image.NewRGBA(image.Rect(0, 0, 1280, 400))
	for i := range img.Pix {
		img.Pix[i] = 0xf5
	}
	blank := encode(img)
	for y := 100; y < 200; y++ { // "text": rows of dark and grey pixels
		for x := 100; x < 400; x += 2 {
			img.Set(x, y, color.RGBA{uint8(x % 200), 0x20, uint8(y), 0xff})
		}
	}
	drawn := encode(img)
	box := [4]float64{50, 50, 500, 200}
	if why := checkShot(blank, 1280, box); why == "" {
		t.Error("a blank region passed")
	}
	if why := checkShot(drawn, 1280, box); why != "" {
		t.Errorf("a drawn region failed: %s", why)
	}
	if why := checkShot(drawn, 1024, box); why == "" {
		t.Error("a page of the wrong width passed")
	}
}
