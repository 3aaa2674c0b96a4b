package orders

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// mutateJSON decodes the canonical sample into generic JSON, applies fn and
// re-encodes it, so tests can remove keys or change types.
func mutateJSON(t testing.TB, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(Sample(), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func item0(m map[string]any) map[string]any { return m["items"].([]any)[0].(map[string]any) }

// asInvalid asserts that err is an *InvalidError of the given class and field.
func asInvalid(t *testing.T, err error, class, field string) *InvalidError {
	t.Helper()
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InvalidError", err, err)
	}
	if ie.Class != class || ie.Field != field {
		t.Fatalf("got class %q field %q (%v), want class %q field %q", ie.Class, ie.Field, ie, class, field)
	}
	if ie.Reason == "" {
		t.Fatalf("empty reason in %v", ie)
	}
	return ie
}

func TestDecodeCanonical(t *testing.T) {
	o, err := Decode(Sample(), DefaultMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if o.OrderUID != "b563feb7b2b84b6test" || o.Payment.Amount != 1817 || len(o.Items) != 1 ||
		o.Items[0].TotalPrice != 317 || o.Delivery.Email != "test@gmail.com" ||
		o.DateCreated.UTC().Format("2006-01-02T15:04:05Z") != "2021-11-26T06:22:19Z" {
		t.Fatalf("decoded order differs from the sample: %+v", o)
	}
}

// TestModelRoundTrip decodes the sample, encodes it back with encoding/json (what
// the HTTP layer serves) and compares the two documents as generic JSON, so every
// name, type and value of the sample survives.
func TestModelRoundTrip(t *testing.T) {
	raw := Sample()
	o, err := Parse(raw, DefaultMaxMessageBytes)
	if err != nil {
		t.Fatalf("canonical sample must pass: %v", err)
	}
	out, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("round trip changed the order:\nwant %s\n got %s", raw, out)
	}
	again, err := Parse(out, DefaultMaxMessageBytes)
	if err != nil {
		t.Fatalf("re-encoded order must pass: %v", err)
	}
	if !ordersEqual(o, again) {
		t.Fatalf("re-parsed order differs:\nwant %+v\n got %+v", o, again)
	}
}

func TestDecodeErrors(t *testing.T) {
	canonical := Sample()
	tests := []struct {
		name     string
		raw      []byte
		maxBytes int
		field    string
		reason   string // substring of the reason
	}{
		{name: "empty", raw: nil, reason: "empty message"},
		{name: "whitespace only", raw: []byte(" \n\t "), reason: "empty message"},
		{name: "oversized", raw: canonical, maxBytes: 100, reason: "message is 1101 bytes, over the 100-byte limit"},
		{name: "oversized garbage checked before parsing", raw: bytes.Repeat([]byte{0xff}, 200), maxBytes: 100, reason: "200 bytes, over the 100-byte limit"},
		{name: "oversized default bound", raw: append(append([]byte(nil), canonical...), bytes.Repeat([]byte(" "), DefaultMaxMessageBytes)...), reason: "over the 1048576-byte limit"},
		{name: "binary garbage", raw: []byte{0xff, 0xfe, 0x00, 0x01}, reason: "not valid UTF-8"},
		{name: "invalid UTF-8 in a string", raw: bytes.Replace(canonical, []byte("Mascaras"), []byte("Masc\xffras"), 1), reason: "not valid UTF-8 (binary data?): invalid byte 0xff at offset"},
		{name: "control bytes", raw: []byte{0x00, 0x01, 0x02}, reason: "malformed JSON"},
		{name: "malformed: truncated", raw: canonical[:len(canonical)/2], field: "payment", reason: "unexpected end of input"},
		{name: "malformed: missing colon", raw: []byte(`{"order_uid" "x"}`), field: "order_uid", reason: "malformed JSON"},
		{name: "malformed: trailing comma", raw: []byte(`{"order_uid":"x",}`), reason: "malformed JSON"},
		{name: "malformed: not JSON", raw: []byte(`hello`), reason: "malformed JSON"},
		{name: "top level array", raw: []byte(`[` + string(canonical) + `]`), reason: "unknown top-level shape: array"},
		{name: "top level null", raw: []byte(`null`), reason: "unknown top-level shape: null"},
		{name: "top level string", raw: []byte(`"order"`), reason: "unknown top-level shape: string"},
		{name: "top level number", raw: []byte(` 42`), reason: "unknown top-level shape: number"},
		{name: "top level boolean", raw: []byte(`true`), reason: "unknown top-level shape: boolean"},
		{name: "unknown field", raw: mutateJSON(t, func(m map[string]any) { m["extra"] = 1 }), field: "extra", reason: "unknown field"},
		{name: "unknown nested field", raw: mutateJSON(t, func(m map[string]any) { obj(m, "delivery")["floor"] = "3" }), field: "delivery.floor", reason: "unknown field"},
		{name: "unknown item field", raw: mutateJSON(t, func(m map[string]any) { item0(m)["color"] = "red" }), field: "items[0].color", reason: "unknown field"},
		{name: "field name in other case", raw: bytes.Replace(canonical, []byte(`"order_uid"`), []byte(`"Order_UID"`), 1), field: "Order_UID", reason: "unknown field"},
		{name: "duplicate field", raw: bytes.Replace(canonical, []byte(`"entry": "WBIL",`), []byte(`"entry": "WBIL", "entry": "X",`), 1), field: "entry", reason: "duplicate member name"},
		{name: "wrong type: amount string", raw: mutateJSON(t, func(m map[string]any) { obj(m, "payment")["amount"] = "lots" }), field: "payment.amount", reason: `want an integer, got string "lots"`},
		{name: "wrong type: item price string", raw: mutateJSON(t, func(m map[string]any) { item0(m)["price"] = "453" }), field: "items[0].price", reason: "want an integer"},
		{name: "wrong type: fractional number", raw: mutateJSON(t, func(m map[string]any) { m["sm_id"] = 1.5 }), field: "sm_id", reason: "want an integer in the int64 range, got number 1.5"},
		{name: "wrong type: number out of range", raw: bytes.Replace(canonical, []byte(`"sm_id": 99`), []byte(`"sm_id": 99999999999999999999`), 1), field: "sm_id", reason: "int64 range"},
		{name: "wrong type: uid number", raw: mutateJSON(t, func(m map[string]any) { m["order_uid"] = 7 }), field: "order_uid", reason: "want a string, got number 7"},
		{name: "wrong type: delivery string", raw: mutateJSON(t, func(m map[string]any) { m["delivery"] = "home" }), field: "delivery", reason: "want an object"},
		{name: "wrong type: items object", raw: mutateJSON(t, func(m map[string]any) { m["items"] = map[string]any{} }), field: "items", reason: "want an array"},
		{name: "wrong type: email bool", raw: mutateJSON(t, func(m map[string]any) { obj(m, "delivery")["email"] = true }), field: "delivery.email", reason: "want a string, got boolean"},
		{name: "trailing data", raw: append(append([]byte(nil), canonical...), " x"...), reason: "trailing data after the top-level object"},
		{name: "trailing object", raw: append(append([]byte(nil), canonical...), "{}"...), reason: "trailing data"},
		{name: "date not RFC 3339", raw: mutateJSON(t, func(m map[string]any) { m["date_created"] = "2021-11-26 06:22:19" }), field: "date_created", reason: "want an RFC 3339 timestamp string"},
		{name: "date as number", raw: mutateJSON(t, func(m map[string]any) { m["date_created"] = 1637907739 }), field: "date_created", reason: "RFC 3339"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Decode(tt.raw, tt.maxBytes)
			if err == nil {
				t.Fatalf("decode succeeded: %+v", o)
			}
			ie := asInvalid(t, err, ClassDecode, tt.field)
			if !strings.Contains(ie.Reason, tt.reason) {
				t.Fatalf("reason %q does not contain %q", ie.Reason, tt.reason)
			}
			if !reflect.DeepEqual(o, Order{}) {
				t.Fatalf("order on error is not zero: %+v", o)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	canonical := Sample()
	tests := []struct {
		name     string
		raw      []byte
		maxBytes int
	}{
		{name: "exactly at the bound", raw: canonical, maxBytes: len(canonical)},
		{name: "surrounding whitespace", raw: append(append([]byte(" \r\n\t"), canonical...), " \n"...)},
		{name: "compact", raw: mutateJSON(t, func(map[string]any) {})},
		{name: "date with offset and fraction", raw: mutateJSON(t, func(m map[string]any) { m["date_created"] = "2021-11-26T09:22:19.123+03:00" })},
		{name: "unicode text", raw: mutateJSON(t, func(m map[string]any) { obj(m, "delivery")["name"] = "Тест Тестов 🚚" })},
		{name: "null optional member", raw: bytes.Replace(canonical, []byte(`"request_id": ""`), []byte(`"request_id": null`), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.raw, tt.maxBytes); err != nil {
				t.Fatalf("want success, got %v", err)
			}
		})
	}
}

// TestParseMissingKeys checks that a required key absent from the message is
// reported by name, not hidden behind the zero value it decodes to.
func TestParseMissingKeys(t *testing.T) {
	tests := []struct {
		name   string
		fn     func(m map[string]any)
		class  string
		field  string
		reason string
	}{
		{name: "order_uid", fn: func(m map[string]any) { delete(m, "order_uid") }, field: "order_uid", reason: "missing"},
		{name: "track_number", fn: func(m map[string]any) { delete(m, "track_number") }, field: "track_number", reason: "missing"},
		{name: "entry", fn: func(m map[string]any) { delete(m, "entry") }, field: "entry", reason: "missing"},
		{name: "delivery object", fn: func(m map[string]any) { delete(m, "delivery") }, field: "delivery", reason: "required object is missing"},
		{name: "delivery null", fn: func(m map[string]any) { m["delivery"] = nil }, field: "delivery", reason: "required object is missing"},
		{name: "delivery empty", fn: func(m map[string]any) { m["delivery"] = map[string]any{} }, field: "delivery", reason: "required object is missing or empty"},
		{name: "delivery.name", fn: func(m map[string]any) { delete(obj(m, "delivery"), "name") }, field: "delivery.name", reason: "missing"},
		{name: "delivery.phone", fn: func(m map[string]any) { delete(obj(m, "delivery"), "phone") }, field: "delivery.phone", reason: "missing"},
		{name: "delivery.city", fn: func(m map[string]any) { delete(obj(m, "delivery"), "city") }, field: "delivery.city", reason: "missing"},
		{name: "delivery.address", fn: func(m map[string]any) { delete(obj(m, "delivery"), "address") }, field: "delivery.address", reason: "missing"},
		{name: "payment object", fn: func(m map[string]any) { delete(m, "payment") }, field: "payment", reason: "required object is missing"},
		{name: "payment.transaction", fn: func(m map[string]any) { delete(obj(m, "payment"), "transaction") }, field: "payment.transaction", reason: "missing"},
		{name: "payment.currency", fn: func(m map[string]any) { delete(obj(m, "payment"), "currency") }, field: "payment.currency", reason: "missing"},
		{name: "payment.provider", fn: func(m map[string]any) { delete(obj(m, "payment"), "provider") }, field: "payment.provider", reason: "missing"},
		{name: "items", fn: func(m map[string]any) { delete(m, "items") }, field: "items", reason: "required array is missing"},
		{name: "items null", fn: func(m map[string]any) { m["items"] = nil }, field: "items", reason: "required array is missing"},
		{name: "items empty", fn: func(m map[string]any) { m["items"] = []any{} }, field: "items", reason: "at least 1 element"},
		{name: "customer_id", fn: func(m map[string]any) { delete(m, "customer_id") }, field: "customer_id", reason: "missing"},
		{name: "date_created", fn: func(m map[string]any) { delete(m, "date_created") }, field: "date_created", reason: "missing"},
		{name: "payment.amount (caught by the totals)", fn: func(m map[string]any) { delete(obj(m, "payment"), "amount") }, field: "payment.amount", reason: "does not equal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(mutateJSON(t, tt.fn), DefaultMaxMessageBytes)
			ie := asInvalid(t, err, ClassValidation, tt.field)
			if !strings.Contains(ie.Reason, tt.reason) {
				t.Fatalf("reason %q does not contain %q", ie.Reason, tt.reason)
			}
		})
	}
}

// TestSampleIsCanonical checks the embedded sample: a valid order with the
// canonical uid, plain JSON, and a fresh copy for every caller.
func TestSampleIsCanonical(t *testing.T) {
	o, err := Parse(Sample(), DefaultMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	if o.OrderUID != SampleUID {
		t.Fatalf("uid %q", o.OrderUID)
	}
	var m map[string]any
	if err := json.Unmarshal(Sample(), &m); err != nil {
		t.Fatal(err)
	}
	a := Sample()
	a[0] = 'x'
	if b := Sample(); b[0] != '{' {
		t.Fatalf("Sample shares its bytes: a caller changed it to %q", b[:1])
	}
}
