package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// piiOrder returns a valid order whose personal data (name, phone, email,
// address, city) carries marker, so that any of them can be found in a log.
func piiOrder(g *ordersgen.Gen, uid, marker string) orders.Order {
	o, _ := g.Valid()
	o.OrderUID, o.Payment.Transaction = uid, uid
	o.Delivery.Name = "Name" + marker
	o.Delivery.Phone = "+1555" + digitsOf(marker)
	o.Delivery.Email = "mail" + strings.ToLower(marker) + "@example.org"
	o.Delivery.Address = "Street" + marker + " 7"
	o.Delivery.City = "City" + marker
	return o
}

// digitsOf maps marker to a string of 10 digits that is unique per marker.
func digitsOf(marker string) string {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(marker); i++ {
		h = (h ^ uint64(marker[i])) * 1099511628211
	}
	return fmt.Sprintf("%010d", h%10_000_000_000)
}

// piiStrings lists what of o must never appear in a log.
func piiStrings(o orders.Order) []string {
	return []string{o.Delivery.Name, o.Delivery.Phone, o.Delivery.Email, o.Delivery.Address, o.Delivery.City}
}

// TestNoPersonalDataInLogs runs the whole service (debug logging, real
// PostgreSQL, real broker) on orders whose personal data is recognisable: valid
// ones, bad ones of every kind that go to the DLQ (their rejection reasons name
// fields and values), poison orders whose database write fails (a CHECK
// constraint, and a trigger whose error message quotes the name, as PostgreSQL's
// own messages quote values), API writes (valid, invalid and failing) and
// lookups. It reads every line the service binary wrote (its logger and
// slog.Default) and asserts that none holds a name, phone, email, address or city.
func TestNoPersonalDataInLogs(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "pii")
	dlq := topic + "-dlq"
	testenv.KafkaCreateTopic(t, brokers, topic, 2)
	testenv.KafkaCreateTopic(t, brokers, dlq, 1)
	group := topic + "-group"

	// Schema first, then two ways for a valid order to fail in the database.
	ctx := context.Background()
	db := dbtest.New(t, dbtest.Pool(2))
	for _, stmt := range []string{
		`ALTER TABLE delivery ADD CONSTRAINT test_pii_poison CHECK (name NOT LIKE 'NamePoisonCheck%')`,
		`CREATE FUNCTION test_pii_reject() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
		   IF NEW.name LIKE 'NamePoisonTrigger%' THEN
		     RAISE EXCEPTION 'rejected delivery of % at % (%)', NEW.name, NEW.address, NEW.email USING ERRCODE = '22023';
		   END IF;
		   RETURN NEW;
		 END $$`,
		`CREATE TRIGGER test_pii_reject BEFORE INSERT OR UPDATE ON delivery FOR EACH ROW EXECUTE FUNCTION test_pii_reject()`,
	} {
		if _, err := db.Bun.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}

	// The service binary: everything it logs (its logger and slog.Default, on
	// stdout and stderr) lands in its log file.
	svc := testenv.StartService(t, testenv.ServiceOptions{
		Binary: testenv.BuildService(t),
		Env: []string{
			"ORDERS_POSTGRES_DSN=" + db.DSN, "ORDERS_KAFKA_BROKERS=" + brokers, "ORDERS_KAFKA_TOPIC=" + topic,
			"ORDERS_KAFKA_DLQ_TOPIC=" + dlq, "ORDERS_KAFKA_GROUP_ID=" + group,
			"ORDERS_API_TOKEN=secret", "ORDERS_LOG_LEVEL=debug", "ORDERS_PIPELINE_RETRY_MIN=10ms",
			"ORDERS_PIPELINE_MAX_MESSAGE_BYTES=524288", // so an oversized message fits the broker
		},
	})
	base := svc.URL("")
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if err := svc.Terminate(40 * time.Second); err != nil {
			t.Errorf("service did not stop cleanly: %v", err)
		}
	}
	t.Cleanup(stop)
	waitStatus(t, base+"/ready", 200, 60*time.Second)

	g := ordersgen.New(7)
	var secrets []string
	var recs []*kgo.Record
	add := func(key string, value []byte, o orders.Order) {
		secrets = append(secrets, piiStrings(o)...)
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: value})
	}
	encode := func(o orders.Order) []byte {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// valid orders
	var valid []orders.Order
	for i := 0; i < 20; i++ {
		o := piiOrder(g, fmt.Sprintf("piivalid%02d", i), fmt.Sprintf("Valid%02dQzx", i))
		valid = append(valid, o)
		add(o.OrderUID, encode(o), o)
	}
	// bad messages, each carrying personal data, each for the DLQ
	bad := 0
	badMsg := func(i int, mutate func(o *orders.Order, raw []byte) []byte) {
		o := piiOrder(g, fmt.Sprintf("piibad%02d", i), fmt.Sprintf("Bad%02dQzx", i))
		add(o.OrderUID, mutate(&o, encode(o)), o)
		bad++
	}
	badMsg(0, func(o *orders.Order, raw []byte) []byte { return raw[:len(raw)/2] }) // truncated after the delivery
	badMsg(1, func(o *orders.Order, raw []byte) []byte {                            // invalid email: the reason names the field
		o.Delivery.Email = "not-an-email-" + strings.ToLower(o.Delivery.Name)
		return encode(*o)
	})
	badMsg(2, func(o *orders.Order, raw []byte) []byte { // inconsistent totals
		o.Payment.GoodsTotal++
		return encode(*o)
	})
	badMsg(3, func(o *orders.Order, raw []byte) []byte { // wrong type: the phone as an array
		return bytes.Replace(raw, []byte(`"phone":"`+o.Delivery.Phone+`"`), []byte(`"phone":["`+o.Delivery.Phone+`"]`), 1)
	})
	badMsg(4, func(o *orders.Order, raw []byte) []byte { // unknown member holding personal data
		return bytes.Replace(raw, []byte(`{"name":`), []byte(`{"`+o.Delivery.Name+`x":"`+o.Delivery.Address+`","name":`), 1)
	})
	badMsg(5, func(o *orders.Order, raw []byte) []byte { // missing required field
		o.TrackNumber = ""
		return encode(*o)
	})
	badMsg(6, func(o *orders.Order, raw []byte) []byte { // invalid UTF-8 next to personal data
		return bytes.Replace(raw, []byte(o.Delivery.Address), []byte(o.Delivery.Address+"\xff\xfe"), 1)
	})
	badMsg(7, func(o *orders.Order, raw []byte) []byte { // over the size bound
		return bytes.Replace(raw, []byte(`"name":"`), []byte(`"name":"`+strings.Repeat("x", 600<<10)), 1)
	})
	badMsg(8, func(o *orders.Order, raw []byte) []byte { // 1001 items: over the bound of 1000
		it := o.Items[0]
		it.Price, it.Sale, it.TotalPrice = 1, 0, 1
		o.Items = make([]orders.Item, 1001)
		for i := range o.Items {
			o.Items[i] = it
		}
		o.Payment.GoodsTotal = 1001
		o.Payment.Amount = o.Payment.GoodsTotal + o.Payment.DeliveryCost + o.Payment.CustomFee
		return encode(*o)
	})
	// orders that pass validation but fail in the database (bisected to the DLQ)
	poison := []orders.Order{
		piiOrder(g, "piipoison1", "PoisonCheck1Qzx"),
		piiOrder(g, "piipoison2", "PoisonTrigger2Qzx"),
	}
	for _, o := range poison {
		if err := orders.Validate(&o); err != nil {
			t.Fatalf("poison order must pass validation: %v", err)
		}
		add(o.OrderUID, encode(o), o)
	}
	testenv.KafkaProduce(t, brokers, topic, recs...)

	for _, o := range valid {
		body := waitStatus(t, base+"/order/"+o.OrderUID, 200, 60*time.Second)
		if !bytes.Contains(body, []byte(o.Delivery.Name)) {
			t.Fatalf("order %s served without its name", o.OrderUID)
		}
	}
	dead := testenv.KafkaReadAll(t, brokers, dlq, 2*time.Second)
	for deadline := time.Now().Add(60 * time.Second); len(dead) < bad+len(poison) && time.Now().Before(deadline); {
		dead = testenv.KafkaReadAll(t, brokers, dlq, 2*time.Second)
	}
	if len(dead) != bad+len(poison) {
		t.Fatalf("%d dead letters, want %d (%d bad + %d poison)", len(dead), bad+len(poison), bad, len(poison))
	}

	// the bounds: items per order (validation) and message size (decode)
	for _, d := range dead {
		hdr := map[string]string{}
		for _, h := range d.Headers {
			hdr[h.Key] = string(h.Value)
		}
		switch string(d.Key) {
		case "piibad08":
			if hdr[kafkaedge.HeaderErrorClass] != "validation" || !strings.Contains(hdr[kafkaedge.HeaderError], "items") {
				t.Errorf("1001 items: dead letter class %q, reason %q", hdr[kafkaedge.HeaderErrorClass], hdr[kafkaedge.HeaderError])
			}
		case "piibad07":
			if hdr[kafkaedge.HeaderErrorClass] != "decode" || !strings.Contains(hdr[kafkaedge.HeaderError], "limit") {
				t.Errorf("oversized: dead letter class %q, reason %q", hdr[kafkaedge.HeaderErrorClass], hdr[kafkaedge.HeaderError])
			}
		}
	}

	// the API: a valid PUT, an invalid one (422 naming the field), one that fails
	// in the database (trigger), lookups and a listing
	put := func(o orders.Order, raw []byte) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/api/v1/orders/"+o.OrderUID, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	apiOK := piiOrder(g, "piiapi1", "Api1Qzx")
	apiBad := piiOrder(g, "piiapi2", "Api2Qzx")
	apiBad.Delivery.Email = "broken-" + apiBad.Delivery.Name
	apiFail := piiOrder(g, "piiapi3", "PoisonTrigger3Qzx")
	for _, o := range []orders.Order{apiOK, apiBad, apiFail} {
		secrets = append(secrets, piiStrings(o)...)
	}
	if s := put(apiOK, encode(apiOK)); s != 200 {
		t.Errorf("valid PUT: %d", s)
	}
	if s := put(apiBad, encode(apiBad)); s != 422 {
		t.Errorf("invalid PUT: %d, want 422", s)
	}
	if s := put(apiFail, encode(apiFail)); s < 400 {
		t.Errorf("PUT failing in the database: %d, want an error", s)
	}
	waitStatus(t, base+"/order/piiapi1", 200, 10*time.Second)
	waitStatus(t, base+"/api/v1/orders?limit=100", 200, 10*time.Second)
	waitStatus(t, base+"/order/piipoison1", 404, 10*time.Second)
	stop()

	logs, err := os.ReadFile(svc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	out := string(logs)
	if !strings.Contains(out, "piipoison") && !strings.Contains(out, "dlq") {
		t.Logf("note: the logs name neither the poison uids nor the DLQ")
	}
	if len(out) == 0 {
		t.Fatal("captured no log output: the test would prove nothing")
	}
	leaks := 0
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if i := strings.Index(out, s); i >= 0 {
			leaks++
			from, to := max(0, strings.LastIndexByte(out[:i], '\n')+1), len(out)
			if j := strings.IndexByte(out[i:], '\n'); j >= 0 {
				to = i + j
			}
			if leaks <= 10 {
				t.Errorf("personal data %q is in the logs:\n%.600s", s, out[from:to])
			}
		}
	}
	if leaks > 0 {
		t.Errorf("%d personal-data strings in %d bytes of logs", leaks, len(out))
	}
	t.Logf("checked %d personal-data strings against %d lines (%d bytes) of logs", len(secrets), strings.Count(out, "\n"), len(out))
}
