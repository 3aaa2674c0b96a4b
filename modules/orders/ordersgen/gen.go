// Package ordersgen generates realistic test orders (valid ones with consistent
// prices, sales and totals) and every kind of bad message the pipeline must send to
// the DLQ. The same seed gives the same sequence.
package ordersgen

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/brianvoe/gofakeit/v7"

	"github.com/orderflow/orders-service/modules/orders"
)

// Bad message kinds produced by Invalid.
const (
	KindMalformed = "malformed" // truncated JSON
	KindMissing   = "missing"   // a required field absent
	KindTypes     = "types"     // a field of the wrong JSON type
	KindTotals    = "totals"    // goods_total inconsistent with the items
	KindOversized = "oversized" // over the message size bound
	KindBinary    = "binary"    // not JSON at all
)

// Kinds lists every bad message kind.
var Kinds = []string{KindMalformed, KindMissing, KindTypes, KindTotals, KindOversized, KindBinary}

// Gen generates orders. It is not safe for concurrent use.
type Gen struct {
	f   *gofakeit.Faker
	seq int
}

// New returns a generator; seed 0 means a random seed.
func New(seed uint64) *Gen { return &Gen{f: gofakeit.New(seed)} }

var (
	currencies = []string{"USD", "EUR", "RUB", "GBP", "ILS"}
	providers  = []string{"wbpay", "stripe", "paypal", "applepay"}
	banks      = []string{"alpha", "sber", "tinkoff", "vtb", "revolut"}
	services   = []string{"meest", "dhl", "ups", "cdek", "boxberry"}
	locales    = []string{"en", "ru", "de", "he"}
)

// Order returns a new valid order with a unique uid.
func (g *Gen) Order() orders.Order {
	f := g.f
	g.seq++
	uid := strings.ReplaceAll(f.UUID(), "-", "")[:20] + fmt.Sprintf("%x", g.seq)
	track := "WB" + strings.ToUpper(f.Lexify("????????????"))
	n := f.IntRange(1, 5)
	items := make([]orders.Item, n)
	var goods int64
	for i := range items {
		price := int64(f.IntRange(100, 50000))
		sale := int64(f.RandomInt([]int{0, 0, 5, 10, 15, 20, 30, 50}))
		total := price * (100 - sale) / 100
		goods += total
		items[i] = orders.Item{
			ChrtID: int64(f.IntRange(1000000, 9999999)), TrackNumber: track, Price: price,
			Rid: strings.ReplaceAll(f.UUID(), "-", ""), Name: f.ProductName(), Sale: sale,
			Size: f.RandomString([]string{"0", "S", "M", "L", "XL", "42"}), TotalPrice: total,
			NmID: int64(f.IntRange(100000, 9999999)), Brand: f.Company(), Status: 202,
		}
	}
	deliveryCost := int64(f.RandomInt([]int{0, 300, 500, 1500}))
	created := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(f.IntRange(0, 5*365*24*3600)) * time.Second)
	return orders.Order{
		OrderUID: uid, TrackNumber: track, Entry: "WBIL",
		Delivery: orders.Delivery{
			Name: f.Name(), Phone: "+" + f.Numerify("##########"), Zip: f.Zip(), City: f.City(),
			Address: f.Street(), Region: f.State(), Email: strings.ToLower(f.Email()),
		},
		Payment: orders.Payment{
			Transaction: uid, Currency: f.RandomString(currencies), Provider: f.RandomString(providers),
			Amount: goods + deliveryCost, PaymentDt: created.Unix(), Bank: f.RandomString(banks),
			DeliveryCost: deliveryCost, GoodsTotal: goods,
		},
		Items: items, Locale: f.RandomString(locales), CustomerID: strings.ToLower(f.Lexify("cust????")),
		DeliveryService: f.RandomString(services), ShardKey: fmt.Sprint(f.IntRange(0, 9)),
		SmID: int64(f.IntRange(1, 100)), DateCreated: created, OofShard: fmt.Sprint(f.IntRange(0, 9)),
	}
}

// Valid returns a new valid order and its JSON encoding.
func (g *Gen) Valid() (orders.Order, []byte) {
	o := g.Order()
	b, err := json.Marshal(o)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return o, b
}

// Invalid returns a bad message of the given kind (see Kinds) and the key to send it
// under. maxBytes is the size bound an oversized message must exceed.
func (g *Gen) Invalid(kind string, maxBytes int) (key string, value []byte) {
	o, b := g.Valid()
	key = o.OrderUID
	edit := func(change func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			panic(err)
		}
		change(m)
		out, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return out
	}
	switch kind {
	case KindMalformed:
		return key, b[:len(b)/2]
	case KindMissing:
		field := g.f.RandomString([]string{"track_number", "entry", "customer_id", "date_created", "items"})
		return key, edit(func(m map[string]any) { delete(m, field) })
	case KindTypes:
		return key, edit(func(m map[string]any) { m["payment"].(map[string]any)["amount"] = "lots" })
	case KindTotals:
		return key, edit(func(m map[string]any) {
			p := m["payment"].(map[string]any)
			p["goods_total"] = p["goods_total"].(float64) + 1
		})
	case KindOversized:
		return key, edit(func(m map[string]any) { m["internal_signature"] = strings.Repeat("x", maxBytes) })
	case KindBinary:
		return key, []byte{0xff, 0xfe, 0x00, 0x01, byte(g.seq), 0x80}
	}
	panic("ordersgen: unknown kind " + kind)
}

// RandomKind returns one of Kinds at random.
func (g *Gen) RandomKind() string { return g.f.RandomString(Kinds) }

// Float returns a random number in [0, 1).
func (g *Gen) Float() float64 { return g.f.Float64() }
