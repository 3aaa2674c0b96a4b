package orders_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

// fastAgrees fails if DecodeFast accepts raw and the JSON v2 decoder (Decode's
// reference) refuses it or gives another order. It reports whether DecodeFast
// accepted.
func fastAgrees(t *testing.T, raw []byte, what string) bool {
	t.Helper()
	var fast orders.Order
	if !orders.DecodeFast(raw, &fast) {
		return false
	}
	var want orders.Order
	if err := jsonv2.Unmarshal(raw, &want, orders.DecodeOptions); err != nil {
		t.Errorf("%s: the fast decoder accepts what the JSON decoder refuses (%v):\n%s", what, err, raw)
		return true
	}
	sameOrder(t, &fast, &want, what)
	return true
}

// sameOrder compares two decoded orders, date_created by instant and zone.
func sameOrder(t *testing.T, got, want *orders.Order, what string) {
	t.Helper()
	g, w := *got, *want
	gn, gOff := g.DateCreated.Zone()
	wn, wo := w.DateCreated.Zone()
	if !g.DateCreated.Equal(w.DateCreated) || gn != wn || gOff != wo {
		t.Errorf("%s: date_created %v, the JSON decoder's %v", what, g.DateCreated, w.DateCreated)
	}
	g.DateCreated = w.DateCreated
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: the fast decoder gives\n%+v\nthe JSON decoder\n%+v", what, g, w)
	}
}

func TestDecodeFastAgreesWithUnmarshal(t *testing.T) {
	g := ordersgen.New(5)
	for i := range 2000 {
		_, raw := g.Valid()
		if !fastAgrees(t, raw, "generated order") {
			t.Fatalf("the fast decoder refuses a generated order (the path every producer's order should take):\n%s", raw)
		}
		if i%100 == 0 {
			var indented bytes.Buffer
			if err := json.Indent(&indented, raw, "\r\n", "\t "); err != nil {
				t.Fatal(err)
			}
			if !fastAgrees(t, indented.Bytes(), "indented order") {
				t.Fatalf("the fast decoder refuses an indented order:\n%s", indented.Bytes())
			}
		}
	}
	sample := orders.Sample()
	if !fastAgrees(t, sample, "the sample") {
		t.Fatal("the fast decoder refuses the canonical sample")
	}
	for _, c := range decodeCases(sample) {
		fastAgrees(t, c, "variant")
	}
}

// decodeCases are variants of the sample at every edge of the fast decoder's
// plain form: each must either be left to the JSON decoder or decode alike.
func decodeCases(sample []byte) [][]byte {
	r := func(from, to string) []byte {
		return bytes.Replace(sample, []byte(from), []byte(to), 1)
	}
	cases := [][]byte{
		r(`"entry": "WBIL",`, `"entry": "WBIL", "extra": 1,`),
		r(`"entry": "WBIL",`, `"entry": "WBIL", "entry": "X",`),
		r(`"entry": "WBIL",`, `"Entry": "WBIL",`),
		r(`"entry": "WBIL",`, `"entry": null,`),
		r(`"entry": "WBIL",`, `"entry": "W\u0042IL",`),
		r(`"entry": "WBIL",`, `"entry": "W\nIL",`),
		r(`"entry": "WBIL",`, "\"entry\": \"W\tIL\","),
		r(`"entry": "WBIL",`, "\"entry\": \"W\xffIL\","),
		r(`"entry": "WBIL",`, "\"entry\": \"Wé日🙂\","),
		r(`"entry": "WBIL",`, `"entry": 5,`),
		r(`"entry": "WBIL",`, `"en\u0074ry": "WBIL",`),
		r(`"entry": "WBIL",`, `"entry": "\"\\\/\b\f\n\r\t\u00e9\u65E5\ud83d\ude42\u0026",`),
		r(`"entry": "WBIL",`, `"entry": "\ud83d",`),
		r(`"entry": "WBIL",`, `"entry": "\ude42",`),
		r(`"entry": "WBIL",`, `"entry": "\ud83d\u0041",`),
		r(`"entry": "WBIL",`, `"entry": "\u12",`),
		r(`"entry": "WBIL",`, `"entry": "\x41",`),
		r(`"entry": "WBIL",`, `"entry": "\u0000",`),
		r(`"entry": "WBIL",`, "\"entry\": \"\\u00e9\xff\","),
		r(`"amount": 1817`, `"amount": 1817.0`),
		r(`"amount": 1817`, `"amount": 1.817e3`),
		r(`"amount": 1817`, `"amount": 1817E0`),
		r(`"amount": 1817`, `"amount": -0`),
		r(`"amount": 1817`, `"amount": 01817`),
		r(`"amount": 1817`, `"amount": -1817`),
		r(`"amount": 1817`, `"amount": +1817`),
		r(`"amount": 1817`, `"amount": 9223372036854775807`),
		r(`"amount": 1817`, `"amount": 9223372036854775808`),
		r(`"amount": 1817`, `"amount": -9223372036854775808`),
		r(`"amount": 1817`, `"amount": -9223372036854775809`),
		r(`"amount": 1817`, `"amount": 99999999999999999999`),
		r(`"amount": 1817`, `"amount": "1817"`),
		r(`"amount": 1817`, `"amount": true`),
		r(`"amount": 1817`, `"amount": 1817, "amount": 1`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T09:22:19.5+03:00"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19.123456789Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26t06:22:19Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26 06:22:19Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T24:00:00Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19+24:00"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19.Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19"`),
		r(`"2021-11-26T06:22:19Z"`, `"26.11.2021"`),
		r(`"2021-11-26T06:22:19Z"`, `"0000-01-01T00:00:00Z"`),
		r(`"2021-11-26T06:22:19Z"`, `null`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19,5Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T6:22:19Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19.1234567891Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19+23:59"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19-00:60"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-02-30T06:22:19Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:60Z"`),
		r(`"2021-11-26T06:22:19Z"`, `"2021-11-26T06:22:19\u005a"`),
		append(append([]byte(nil), sample...), ` {}`...),
		append(append([]byte(nil), sample...), " \n\t"...),
		append([]byte(" \n"), sample...),
		[]byte(`{}`),
		[]byte(`{"items": []}`),
		[]byte(`{"items": [{}]}`),
		[]byte(`{"items": null}`),
		[]byte(`{"items": [], "items": []}`),
		[]byte(`{"delivery": {}, "payment": {}}`),
		[]byte(`{"delivery": {"name": "a", "name": "b"}}`),
		[]byte(`{"delivery": {"zip": 5}}`),
		[]byte(`{"items": [{"price": 1, "price": 2}]}`),
		[]byte(`{"items": [{"price": 1},]}`),
		[]byte(`{"entry": "a",}`),
		[]byte(`{"entry" "a"}`),
		[]byte(`{"entry": "a"`),
		[]byte(`{"entry": "a`),
		[]byte(`{"items": [`),
		[]byte(`{"sm_id": -}`),
		[]byte(`{"sm_id": 1-}`),
		[]byte(`{"order_uid": "x"}`),
	}
	for i := 1; i < len(sample); i += 97 {
		cases = append(cases, sample[:i])
	}
	return cases
}

// TestDecodeUsesTheFastPathAndFallsBack shows Decode's two paths give the same
// orders and errors: escapes decode on the fast path as the JSON decoder
// decodes them, an order the fast decoder leaves (a null member) decodes as
// before, and a refused one carries the JSON decoder's error.
func TestDecodeUsesTheFastPathAndFallsBack(t *testing.T) {
	sample := orders.Sample()
	plain, err := orders.Decode(sample, 0)
	if err != nil {
		t.Fatal(err)
	}
	escaped := bytes.Replace(sample, []byte(`"WBIL"`), []byte(`"W\u0042I\u004c"`), 1)
	if !fastAgrees(t, escaped, "escaped entry") {
		t.Fatal("the fast decoder leaves escapes to the JSON decoder")
	}
	viaFast, err := orders.Decode(escaped, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameOrder(t, &viaFast, &plain, "escaped entry")

	nullLocale := bytes.Replace(sample, []byte(`"locale": "en"`), []byte(`"locale": null`), 1)
	var fast orders.Order
	if orders.DecodeFast(nullLocale, &fast) {
		t.Fatal("the fast decoder takes null: this test needs another fallback case")
	}
	viaFallback, err := orders.Decode(nullLocale, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := plain
	want.Locale = ""
	sameOrder(t, &viaFallback, &want, "null locale")

	_, err = orders.Decode(bytes.Replace(sample, []byte(`"amount": 1817`), []byte(`"amount": 1817.5`), 1), 0)
	var ie *orders.InvalidError
	if !errors.As(err, &ie) || ie.Field != "payment.amount" || !strings.Contains(ie.Reason, "int64") {
		t.Fatalf("a fractional amount: got %v, want the JSON decoder's error naming payment.amount", err)
	}
}

// FuzzDecodeFast holds the fast decoder to the JSON decoder on arbitrary input.
func FuzzDecodeFast(f *testing.F) {
	sample := orders.Sample()
	f.Add(sample)
	for _, c := range decodeCases(sample) {
		f.Add(c)
	}
	g := ordersgen.New(9)
	for range 5 {
		_, raw := g.Valid()
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fastAgrees(t, raw, "fuzzed input")
	})
}

func BenchmarkDecodeFast(b *testing.B) {
	_, raw := ordersgen.New(3).Valid()
	b.SetBytes(int64(len(raw)))
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := orders.Decode(raw, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-v2", func(b *testing.B) {
		for b.Loop() {
			var o orders.Order
			if err := jsonv2.Unmarshal(raw, &o, orders.DecodeOptions); err != nil {
				b.Fatal(err)
			}
		}
	})
}
