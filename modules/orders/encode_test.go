package orders_test

import (
	"bytes"
	"encoding/json"
	"reflect"
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
// encoding/json writes U+FFFD for it as the rune in Go 1.27's default build and
// as \ufffd with GOEXPERIMENT=nojsonv2.
func sameAsEncodingJSON(t *testing.T, o *orders.Order) {
	t.Helper()
	valid := *o
	if o.Items != nil {
		valid.Items = append([]orders.Item{}, o.Items...)
	}
	eachString(&valid, func(p *string) { *p = replaceInvalid(*p) })
	want, wantErr := json.Marshal(&valid)
	got, gotErr := orders.EncodeJSON(o)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("encoding/json error %v, EncodeJSON error %v", wantErr, gotErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EncodeJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
}

// eachString calls f with every string field of o, its items' included.
func eachString(o *orders.Order, f func(*string)) {
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			f(v.Addr().Interface().(*string))
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(o).Elem())
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
		// each string field alone, then all of them
		o := g.Order()
		n := 0
		eachString(&o, func(*string) { n++ })
		for k := range n {
			o := g.Order()
			i := 0
			eachString(&o, func(p *string) {
				if i == k {
					*p = s
				}
				i++
			})
			sameAsEncodingJSON(t, &o)
		}
		eachString(&o, func(p *string) { *p = s })
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
		func(o *orders.Order) { o.DateCreated = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) },
		func(o *orders.Order) { o.DateCreated = time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)) },
		func(o *orders.Order) { o.DateCreated = time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", -24*3600)) },
		func(o *orders.Order) {
			o.DateCreated = time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600-1))
		},
		func(o *orders.Order) { o.DateCreated = time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", 100*3600)) },
		func(o *orders.Order) { o.DateCreated = time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3630)) },
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
		k := 0
		eachString(&o, func(p *string) { // every third string field, from n
			if (int64(k)+n)%3 == 0 {
				*p = s
			}
			k++
		})
		o.Payment.GoodsTotal, o.Items[0].Price = n, -n
		// any instant from year -292 billion on, any zone up to ±100 hours
		o.DateCreated = time.Unix(sec, nsec).In(time.FixedZone("z", int(n%(100*3600))))
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
