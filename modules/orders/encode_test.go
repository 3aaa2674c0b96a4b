package orders_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

// sameAsEncodingJSON fails unless EncodeJSON gives encoding/json's bytes for o,
// or fails where it fails. Invalid UTF-8 (which no stored order holds: Decode
// refuses it and PostgreSQL cannot store it) is compared as its replacement:
// encoding/json in Go 1.27 writes U+FFFD for it either as the rune or as
// \ufffd, depending on which JSON calls the process made before.
func sameAsEncodingJSON(t *testing.T, o *orders.Order) {
	t.Helper()
	valid := *o
	if o.Items != nil {
		valid.Items = append([]orders.Item{}, o.Items...)
	}
	for _, p := range []*string{
		&valid.OrderUID, &valid.TrackNumber, &valid.Delivery.Name, &valid.Delivery.Email,
		&valid.Payment.Currency, &valid.Payment.Bank, &valid.OofShard,
	} {
		*p = replaceInvalid(*p)
	}
	for i := range valid.Items {
		valid.Items[i].Name, valid.Items[i].Brand = replaceInvalid(valid.Items[i].Name), replaceInvalid(valid.Items[i].Brand)
	}
	want, wantErr := json.Marshal(&valid)
	got, gotErr := orders.EncodeJSON(o)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("encoding/json error %v, EncodeJSON error %v", wantErr, gotErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

// replaceInvalid replaces each byte of s that is not part of valid UTF-8 by U+FFFD.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// strangeStrings are the strings whose quoting differs between encoders:
// escapes, HTML characters, JavaScript line separators, control characters,
// invalid UTF-8 and multi-byte runes at the edges.
var strangeStrings = []string{
	"",
	`"quoted" \back\slash/`,
	"<script>alert('x')</script> & more",
	"line\u2028separator\u2029paragraph",
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f",
	"bad \xff\xfe utf-8 \xc3",
	"\xe2\x80",
	"Mascaras çà 日本語 🙂",
	"\u00a0\ufeff\ufffd",
	strings.Repeat("long ", 200),
}

func TestEncodeJSONMatchesEncodingJSON(t *testing.T) {
	sample, err := orders.Parse(orders.Sample(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sameAsEncodingJSON(t, &sample)

	g := ordersgen.New(7)
	for range 2000 {
		o := g.Order()
		sameAsEncodingJSON(t, &o)
	}

	for _, s := range strangeStrings {
		o := g.Order()
		o.OrderUID, o.Delivery.Name, o.Payment.Bank, o.Items[0].Brand, o.OofShard = s, s, s, s, s
		sameAsEncodingJSON(t, &o)
	}

	edges := []func(o *orders.Order){
		func(o *orders.Order) { o.Items = nil },
		func(o *orders.Order) { o.Items = []orders.Item{} },
		func(o *orders.Order) { o.Items = append(o.Items, o.Items...) },
		func(o *orders.Order) { o.Payment.Amount, o.SmID, o.Items[0].Status = -1<<63, 1<<63-1, -42 },
		func(o *orders.Order) { o.DateCreated = time.Time{} },
		func(o *orders.Order) {
			o.DateCreated = time.Date(2021, 11, 26, 6, 22, 19, 123456789, time.FixedZone("", 3*3600+1800))
		},
		func(o *orders.Order) { o.DateCreated = time.Date(2021, 11, 26, 6, 22, 19, 100, time.UTC) },
		func(o *orders.Order) { o.DateCreated = time.Date(9999, 12, 31, 23, 59, 59, 0, time.Local) },
		func(o *orders.Order) { o.DateCreated = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		func(o *orders.Order) { o.DateCreated = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for _, edge := range edges {
		o := g.Order()
		edge(&o)
		sameAsEncodingJSON(t, &o)
	}
}

// FuzzEncodeJSON holds EncodeJSON to encoding/json on arbitrary strings, numbers
// and times.
func FuzzEncodeJSON(f *testing.F) {
	for i, s := range strangeStrings {
		f.Add(s, int64(i)-3, int64(1637907739)+int64(i), int64(i*1000003))
	}
	g := ordersgen.New(11)
	base := g.Order()
	f.Fuzz(func(t *testing.T, s string, n, sec, nsec int64) {
		o := base
		o.Items = append([]orders.Item(nil), base.Items...)
		o.TrackNumber, o.Delivery.Email, o.Payment.Currency, o.Items[0].Name = s, s, s, s
		o.Payment.GoodsTotal, o.Items[0].Price = n, -n
		o.DateCreated = time.Unix(sec%(400*365*86400), nsec).In(time.FixedZone("z", int(n%(14*3600))))
		sameAsEncodingJSON(t, &o)
	})
}

func BenchmarkEncodeJSON(b *testing.B) {
	o := ordersgen.New(3).Order()
	b.Run("EncodeJSON", func(b *testing.B) {
		for b.Loop() {
			if _, err := orders.EncodeJSON(&o); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&o); err != nil {
				b.Fatal(err)
			}
		}
	})
}
