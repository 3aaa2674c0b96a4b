package orders

import (
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// canonicalOrder returns a freshly decoded copy of the canonical sample.
func canonicalOrder(t testing.TB) Order {
	t.Helper()
	o, err := Decode(Sample(), DefaultMaxMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// ordersEqual compares two orders, the timestamp by instant.
func ordersEqual(a, b Order) bool {
	if !a.DateCreated.Equal(b.DateCreated) {
		return false
	}
	a.DateCreated, b.DateCreated = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// setItemTotal sets item 0's total_price and keeps goods_total and amount consistent.
func setItemTotal(o *Order, total int64) {
	o.Items[0].TotalPrice = total
	o.Payment.GoodsTotal = total
	o.Payment.Amount = total + o.Payment.DeliveryCost + o.Payment.CustomFee
}

func TestValidateCanonical(t *testing.T) {
	o := canonicalOrder(t)
	if err := Validate(&o); err != nil {
		t.Fatalf("canonical sample must pass: %v", err)
	}
	// The sample fixes the item rule: 453 with 30% off is 317.1, stored as 317.
	if got := discounted(453, 30); got != 317 {
		t.Fatalf("discounted(453, 30) = %d, want 317", got)
	}
}

func TestValidateNil(t *testing.T) {
	_ = asInvalid(t, Validate(nil), ClassValidation, "")
}

// TestValidateRefusesNULEverywhere puts a NUL character into each string field of
// the model in turn (found by reflection, so a new field is covered): Validate
// must refuse it and name the field, by its own rule or by the NUL check
// (nulField), since PostgreSQL text cannot store NUL.
func TestValidateRefusesNULEverywhere(t *testing.T) {
	checked := 0
	var fields func(typ reflect.Type, path string, at func(o *Order) reflect.Value)
	fields = func(typ reflect.Type, path string, at func(o *Order) reflect.Value) {
		switch {
		case typ.Kind() == reflect.String:
			checked++
			t.Run(path, func(t *testing.T) {
				o := canonicalOrder(t)
				f := at(&o)
				f.SetString(f.String() + "\x00")
				err := Validate(&o)
				if err == nil {
					t.Fatalf("a NUL in %s passes Validate: add the field to nulField (validate.go)", path)
				}
				_ = asInvalid(t, err, ClassValidation, path)
			})
		case typ.Kind() == reflect.Struct && typ != reflect.TypeFor[time.Time]():
			for i := range typ.NumField() {
				name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				if name == "-" || !typ.Field(i).IsExported() {
					continue
				}
				if path != "" {
					name = path + "." + name
				}
				fields(typ.Field(i).Type, name, func(o *Order) reflect.Value { return at(o).Field(i) })
			}
		case typ.Kind() == reflect.Slice:
			fields(typ.Elem(), path+"[0]", func(o *Order) reflect.Value { return at(o).Index(0) })
		}
	}
	fields(reflect.TypeFor[Order](), "", func(o *Order) reflect.Value { return reflect.ValueOf(o).Elem() })
	if checked < 20 {
		t.Fatalf("only %d string fields found", checked)
	}
}

// TestValidateRules has, for every rule, at least one case that passes and one
// that fails; a failing case names the JSON path of the field.
func TestValidateRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name  string
		edit  func(o *Order)
		field string // "" = must pass
	}{
		// no NUL characters anywhere (PostgreSQL text cannot store them).
		{"name with a NUL", func(o *Order) { o.Delivery.Name = "Test\x00Testov" }, "delivery.name"},
		{"item brand with a NUL", func(o *Order) { o.Items[0].Brand = "\x00" }, "items[0].brand"},
		{"signature with a NUL", func(o *Order) { o.InternalSignature = "a\x00" }, "internal_signature"},
		{"unicode but no NUL", func(o *Order) { o.Delivery.Name = "Тест \u00e9\u4e2d" }, ""},
		// order_uid: required, uid format.
		{"uid ok charset", func(o *Order) { o.OrderUID = "Ab-9_z" }, ""},
		{"uid 64 chars", func(o *Order) { o.OrderUID = long(64) }, ""},
		{"uid empty", func(o *Order) { o.OrderUID = "" }, "order_uid"},
		{"uid 65 chars", func(o *Order) { o.OrderUID = long(65) }, "order_uid"},
		{"uid bad char", func(o *Order) { o.OrderUID = "b563/feb7" }, "order_uid"},
		// track_number, entry, customer_id: required, bounded.
		{"track_number 128", func(o *Order) { o.TrackNumber = long(128) }, ""},
		{"track_number empty", func(o *Order) { o.TrackNumber = "" }, "track_number"},
		{"track_number 129", func(o *Order) { o.TrackNumber = long(129) }, "track_number"},
		{"entry 64", func(o *Order) { o.Entry = long(64) }, ""},
		{"entry empty", func(o *Order) { o.Entry = "" }, "entry"},
		{"entry 65", func(o *Order) { o.Entry = long(65) }, "entry"},
		{"customer_id set", func(o *Order) { o.CustomerID = "c-1" }, ""},
		{"customer_id empty", func(o *Order) { o.CustomerID = "" }, "customer_id"},
		{"customer_id 129", func(o *Order) { o.CustomerID = long(129) }, "customer_id"},
		// optional strings: bounded only.
		{"locale empty", func(o *Order) { o.Locale = "" }, ""},
		{"locale 17", func(o *Order) { o.Locale = long(17) }, "locale"},
		{"shardkey 17", func(o *Order) { o.ShardKey = long(17) }, "shardkey"},
		{"oof_shard 17", func(o *Order) { o.OofShard = long(17) }, "oof_shard"},
		{"internal_signature 257", func(o *Order) { o.InternalSignature = long(257) }, "internal_signature"},
		{"delivery_service 129", func(o *Order) { o.DeliveryService = long(129) }, "delivery_service"},
		// sm_id: non-negative.
		{"sm_id 0", func(o *Order) { o.SmID = 0 }, ""},
		{"sm_id negative", func(o *Order) { o.SmID = -1 }, "sm_id"},
		// date_created: required.
		{"date_created other zone", func(o *Order) { o.DateCreated = o.DateCreated.In(time.FixedZone("", 3*3600)) }, ""},
		{"date_created zero", func(o *Order) { o.DateCreated = time.Time{} }, "date_created"},
		// delivery: required object and members, email format.
		{"delivery missing", func(o *Order) { o.Delivery = Delivery{} }, "delivery"},
		{"delivery.name empty", func(o *Order) { o.Delivery.Name = "" }, "delivery.name"},
		{"delivery.phone empty", func(o *Order) { o.Delivery.Phone = "" }, "delivery.phone"},
		{"delivery.city empty", func(o *Order) { o.Delivery.City = "" }, "delivery.city"},
		{"delivery.address empty", func(o *Order) { o.Delivery.Address = "" }, "delivery.address"},
		{"delivery.zip empty", func(o *Order) { o.Delivery.Zip = "" }, ""},
		{"delivery.zip 33", func(o *Order) { o.Delivery.Zip = long(33) }, "delivery.zip"},
		{"delivery.region 257", func(o *Order) { o.Delivery.Region = long(257) }, "delivery.region"},
		{"email empty", func(o *Order) { o.Delivery.Email = "" }, ""},
		{"email other", func(o *Order) { o.Delivery.Email = "a.b+c@example.co.uk" }, ""},
		{"email no at", func(o *Order) { o.Delivery.Email = "test.gmail.com" }, "delivery.email"},
		{"email spaces", func(o *Order) { o.Delivery.Email = "te st@gmail.com" }, "delivery.email"},
		// payment: required object and members, currency format.
		{"payment missing", func(o *Order) { o.Payment = Payment{} }, "payment"},
		{"payment.transaction empty", func(o *Order) { o.Payment.Transaction = "" }, "payment.transaction"},
		{"payment.provider empty", func(o *Order) { o.Payment.Provider = "" }, "payment.provider"},
		{"payment.request_id 129", func(o *Order) { o.Payment.RequestID = long(129) }, "payment.request_id"},
		{"payment.bank 65", func(o *Order) { o.Payment.Bank = long(65) }, "payment.bank"},
		{"currency EUR", func(o *Order) { o.Payment.Currency = "EUR" }, ""},
		{"currency empty", func(o *Order) { o.Payment.Currency = "" }, "payment.currency"},
		{"currency lower", func(o *Order) { o.Payment.Currency = "usd" }, "payment.currency"},
		{"currency 2 letters", func(o *Order) { o.Payment.Currency = "US" }, "payment.currency"},
		{"currency 4 letters", func(o *Order) { o.Payment.Currency = "USDT" }, "payment.currency"},
		{"currency digits", func(o *Order) { o.Payment.Currency = "U5D" }, "payment.currency"},
		// negative money.
		{"payment_dt negative", func(o *Order) { o.Payment.PaymentDt = -1 }, "payment.payment_dt"},
		{"amount negative", func(o *Order) { o.Payment.Amount = -1817 }, "payment.amount"},
		{"delivery_cost negative", func(o *Order) { o.Payment.DeliveryCost = -1; o.Payment.Amount = 316 }, "payment.delivery_cost"},
		{"goods_total negative", func(o *Order) { o.Payment.GoodsTotal = -317 }, "payment.goods_total"},
		{"custom_fee negative", func(o *Order) { o.Payment.CustomFee = -1; o.Payment.Amount = 1816 }, "payment.custom_fee"},
		{"price negative", func(o *Order) { o.Items[0].Price = -453 }, "items[0].price"},
		{"total_price negative", func(o *Order) { o.Items[0].TotalPrice = -1 }, "items[0].total_price"},
		{"chrt_id negative", func(o *Order) { o.Items[0].ChrtID = -1 }, "items[0].chrt_id"},
		{"nm_id negative", func(o *Order) { o.Items[0].NmID = -1 }, "items[0].nm_id"},
		{"custom_fee and delivery_cost zero", func(o *Order) { o.Payment.CustomFee, o.Payment.DeliveryCost, o.Payment.Amount = 0, 0, 317 }, ""},
		// items: 1..1000.
		{"items nil", func(o *Order) { o.Items = nil }, "items"},
		{"items empty", func(o *Order) { o.Items = []Item{} }, "items"},
		{"items 1000", func(o *Order) { setItems(o, 1000) }, ""},
		{"items 1001", func(o *Order) { setItems(o, 1001) }, "items"},
		{"item name 513", func(o *Order) { o.Items[0].Name = long(513) }, "items[0].name"},
		{"item with only a name", func(o *Order) {
			setItems(o, 2)
			o.Items[1] = Item{Name: "gift"}
			o.Payment.GoodsTotal, o.Payment.Amount = 317, 1817
		}, ""},
		{"empty item", func(o *Order) {
			setItems(o, 2)
			o.Items[1] = Item{}
			o.Payment.GoodsTotal, o.Payment.Amount = 317, 1817
		}, "items[1]"},
		{"second item bad", func(o *Order) { setItems(o, 2); o.Items[1].Size = long(33) }, "items[1].size"},
		// sale 0..100.
		{"sale 0", func(o *Order) { o.Items[0].Sale = 0; setItemTotal(o, 453) }, ""},
		{"sale 100", func(o *Order) { o.Items[0].Sale = 100; setItemTotal(o, 0) }, ""},
		{"sale 101", func(o *Order) { o.Items[0].Sale = 101; setItemTotal(o, 0) }, "items[0].sale"},
		{"sale negative", func(o *Order) { o.Items[0].Sale = -1; setItemTotal(o, 457) }, "items[0].sale"},
		// item total_price = price*(100-sale)/100 rounded down, ±1.
		{"item total rounded up", func(o *Order) { setItemTotal(o, 318) }, ""},
		{"item total one below", func(o *Order) { setItemTotal(o, 316) }, ""},
		{"item total two above", func(o *Order) { setItemTotal(o, 319) }, "items[0].total_price"},
		{"item total two below", func(o *Order) { setItemTotal(o, 315) }, "items[0].total_price"},
		{"item total ignores sale", func(o *Order) { setItemTotal(o, 453) }, "items[0].total_price"},
		{"item total huge price", func(o *Order) {
			o.Items[0].Price = math.MaxInt64
			o.Items[0].Sale = 0
			setItemTotal(o, math.MaxInt64-1500)
		}, "items[0].total_price"},
		// goods_total = sum(items.total_price).
		{"goods_total two items", func(o *Order) {
			setItems(o, 2)
			o.Payment.GoodsTotal, o.Payment.Amount = 634, 2134
		}, ""},
		{"goods_total one item of two", func(o *Order) { setItems(o, 2); o.Payment.GoodsTotal, o.Payment.Amount = 317, 1817 }, "payment.goods_total"},
		{"goods_total off by one", func(o *Order) { o.Payment.GoodsTotal, o.Payment.Amount = 318, 1818 }, "payment.goods_total"},
		{"items sum overflows", func(o *Order) {
			setItems(o, 2)
			for i := range o.Items {
				o.Items[i].Price, o.Items[i].Sale, o.Items[i].TotalPrice = math.MaxInt64, 0, math.MaxInt64
			}
		}, "items[1].total_price"},
		// amount = goods_total + delivery_cost + custom_fee.
		{"amount with custom fee", func(o *Order) { o.Payment.CustomFee, o.Payment.Amount = 100, 1917 }, ""},
		{"amount ignores custom fee", func(o *Order) { o.Payment.CustomFee = 100 }, "payment.amount"},
		{"amount ignores delivery", func(o *Order) { o.Payment.Amount = 317 }, "payment.amount"},
		{"amount overflows", func(o *Order) {
			o.Items[0].Price, o.Items[0].Sale = math.MaxInt64, 0
			setItemTotal(o, math.MaxInt64)
			o.Payment.Amount = math.MaxInt64
		}, "payment.amount"},
		// the first failing field, in JSON order, is reported.
		{"first of several", func(o *Order) {
			o.Payment.Currency = "usd"
			o.Delivery.Email = "bad"
			o.OrderUID = ""
		}, "order_uid"},
		{"field rules before totals", func(o *Order) { o.Payment.Amount = 1; o.Items[0].Brand = long(257) }, "items[0].brand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := canonicalOrder(t)
			tt.edit(&o)
			err := Validate(&o)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			_ = asInvalid(t, err, ClassValidation, tt.field)
		})
	}
}

// setItems makes n copies of the sample item and fixes the payment totals.
func setItems(o *Order, n int) {
	it := o.Items[0]
	o.Items = make([]Item, n)
	for i := range o.Items {
		o.Items[i] = it
	}
	o.Payment.GoodsTotal = int64(n) * it.TotalPrice
	o.Payment.Amount = o.Payment.GoodsTotal + o.Payment.DeliveryCost + o.Payment.CustomFee
}

func TestDiscounted(t *testing.T) {
	tests := []struct{ price, sale, want int64 }{
		{453, 30, 317},
		{100, 30, 70},
		{0, 50, 0},
		{999, 0, 999},
		{999, 100, 0},
		{1, 50, 0},
		{199, 50, 99},
		{math.MaxInt64, 0, math.MaxInt64},
		{math.MaxInt64, 50, math.MaxInt64 / 2},
	}
	for _, tt := range tests {
		if got := discounted(tt.price, tt.sale); got != tt.want {
			t.Errorf("discounted(%d, %d) = %d, want %d", tt.price, tt.sale, got, tt.want)
		}
	}
}

func TestParseReturnsZeroOnValidationError(t *testing.T) {
	raw := mutateJSON(t, func(m map[string]any) { obj(m, "payment")["currency"] = "usd" })
	o, err := Parse(raw, 0)
	ie := asInvalid(t, err, ClassValidation, "payment.currency")
	if !strings.Contains(ie.Error(), `validation: payment.currency: must be 3 upper-case letters`) {
		t.Fatalf("unexpected message %q", ie.Error())
	}
	if !reflect.DeepEqual(o, Order{}) {
		t.Fatalf("order on error is not zero: %+v", o)
	}
}

// TestParseConcurrent runs Parse from several goroutines on valid and invalid
// input; with -race it checks that the shared validator is safe to share.
func TestParseConcurrent(t *testing.T) {
	good := Sample()
	bad := mutateJSON(t, func(m map[string]any) { obj(m, "delivery")["email"] = "nope" })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if (g+i)%2 == 0 {
					if _, err := Parse(good, 0); err != nil {
						t.Errorf("good: %v", err)
						return
					}
				} else if _, err := Parse(bad, 0); err == nil {
					t.Errorf("bad order passed")
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkParse(b *testing.B) {
	raw := Sample()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw, DefaultMaxMessageBytes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	raw := Sample()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(raw, DefaultMaxMessageBytes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	o := canonicalOrder(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate(&o); err != nil {
			b.Fatal(err)
		}
	}
}
