package orders

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzMaxBytes keeps fuzz inputs small enough to reach the size bound too.
const fuzzMaxBytes = 64 << 10

// FuzzParse checks that Parse never panics, that every error is an *InvalidError
// of a known class, and that an accepted order survives encoding/json (the shape
// the HTTP API serves) and a second Parse unchanged. Seeds: the canonical sample
// and one message of each bad kind; more live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	canonical := Sample()
	seeds := [][]byte{
		canonical,
		nil,
		[]byte(`{}`),
		[]byte(`null`),
		{0xff, 0xfe, 0x00, 0x01},
		canonical[:len(canonical)/2],
		[]byte(`[` + string(canonical) + `]`),
		append(append([]byte(nil), canonical...), `{}`...),
		bytes.Replace(canonical, []byte(`"amount": 1817`), []byte(`"amount": "lots"`), 1),
		bytes.Replace(canonical, []byte(`"amount": 1817`), []byte(`"amount": 1818`), 1),
		bytes.Replace(canonical, []byte(`"goods_total": 317`), []byte(`"goods_total": 316`), 1),
		bytes.Replace(canonical, []byte(`"sale": 30`), []byte(`"sale": 130`), 1),
		bytes.Replace(canonical, []byte(`"price": 453`), []byte(`"price": -453`), 1),
		bytes.Replace(canonical, []byte(`"currency": "USD"`), []byte(`"currency": "usd"`), 1),
		bytes.Replace(canonical, []byte(`"email": "test@gmail.com"`), []byte(`"email": "test"`), 1),
		bytes.Replace(canonical, []byte(`"entry": "WBIL",`), []byte(`"entry": "WBIL", "extra": 1,`), 1),
		bytes.Replace(canonical, []byte(`"entry": "WBIL",`), []byte(`"entry": "WBIL", "entry": "X",`), 1),
		bytes.Replace(canonical, []byte(`"2021-11-26T06:22:19Z"`), []byte(`"2021-11-26T09:22:19.5+03:00"`), 1),
		bytes.Replace(canonical, []byte(`"2021-11-26T06:22:19Z"`), []byte(`"26.11.2021"`), 1),
		bytes.Replace(canonical, []byte(`"Mascaras"`), []byte(`"Mas\u00e7aras \u2028<&>"`), 1),
		bytes.Repeat([]byte(" "), fuzzMaxBytes+1),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := Parse(raw, fuzzMaxBytes)
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || (ie.Class != ClassDecode && ie.Class != ClassValidation) || ie.Reason == "" {
				t.Fatalf("error %v (%T) is not a classified *InvalidError", err, err)
			}
			return
		}
		out, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("marshal an accepted order: %v", err)
		}
		again, err := Parse(out, 0)
		if err != nil {
			t.Fatalf("re-parse an accepted order: %v\n%s", err, out)
		}
		if !ordersEqual(o, again) {
			t.Fatalf("round trip changed the order:\n in  %+v\n out %+v", o, again)
		}
	})
}
