package orders

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
)

// validate is the one validator instance: it is safe for concurrent use and
// caches the parsed struct tags of Order after the first call.
var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	mustRegister(v, "uid", func(fl validator.FieldLevel) bool { return ValidUID(fl.Field().String()) })
	mustRegister(v, "currency3", func(fl validator.FieldLevel) bool { return isCurrency3(fl.Field().String()) })
	return v
}

func mustRegister(v *validator.Validate, tag string, fn validator.Func) {
	if err := v.RegisterValidation(tag, fn); err != nil {
		panic(fmt.Sprintf("orders: register validation %q: %v", tag, err))
	}
}

// isCurrency3 reports whether s is exactly 3 upper-case ASCII letters.
func isCurrency3(s string) bool {
	return len(s) == 3 &&
		s[0] >= 'A' && s[0] <= 'Z' &&
		s[1] >= 'A' && s[1] <= 'Z' &&
		s[2] >= 'A' && s[2] <= 'Z'
}

// Parse decodes raw strictly (see Decode; maxBytes <= 0 means
// DefaultMaxMessageBytes) and then validates the order (see Validate). On error
// it returns the zero Order and an *InvalidError of class ClassDecode or
// ClassValidation.
func Parse(raw []byte, maxBytes int) (Order, error) {
	o, err := Decode(raw, maxBytes)
	if err != nil {
		return Order{}, err
	}
	if err := Validate(&o); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Validate checks o against the field rules in the validate tags of the model
// (required fields, lengths, uid and currency formats, email, non-negative money,
// sale 0..100, 1..1000 items) and then the business rules, in this order: no item
// is entirely empty; each item's total_price is price*(100-sale)/100 rounded
// down, within ±1 for other rounding; payment.goods_total is the sum of the items'
// total_price; payment.amount is goods_total + delivery_cost + custom_fee. It
// returns nil or an *InvalidError of class ClassValidation naming the first
// failing field (in the order of the JSON shape) by its JSON path, e.g.
// "items[0].sale".
func Validate(o *Order) error {
	if o == nil {
		return validationErr("", "order is nil")
	}
	// the validator runs only when the fast check refuses: to name the failing
	// field, or to accept what plainEmail leaves to it
	if !fieldRulesHold(o) {
		if err := validate.Struct(o); err != nil {
			var ves validator.ValidationErrors
			if errors.As(err, &ves) && len(ves) > 0 {
				return fieldError(o, ves[0])
			}
			return validationErr("", err.Error())
		}
	}
	if field := nulField(o); field != "" {
		return validationErr(field, "contains a NUL character (\\u0000), which cannot be stored")
	}
	return checkTotals(o)
}

// fieldRulesHold reports whether o passes every rule of the model's validate
// tags, checked directly instead of by the validator's reflection, which cost
// a quarter of the ingest flow's CPU per order (issue 14's profile). It is
// Validate's fast path: when it says yes the validator is not run; when it says
// no, the validator runs and names the failing field. It must never say yes
// where the validator says no: TestFieldRulesHoldAgreesWithValidator derives
// every field's boundaries from the tags themselves and compares the two, and
// FuzzFieldRulesHold compares them on arbitrary strings and numbers.
func fieldRulesHold(o *Order) bool {
	d, p := &o.Delivery, &o.Payment
	if !(ValidUID(o.OrderUID) && required(o.TrackNumber, 128) && required(o.Entry, 64) &&
		required(d.Name, 256) && required(d.Phone, 32) && atMost(d.Zip, 32) && required(d.City, 256) &&
		required(d.Address, 512) && atMost(d.Region, 256) &&
		(d.Email == "" || atMost(d.Email, 256) && plainEmail(d.Email)) &&
		required(p.Transaction, 128) && atMost(p.RequestID, 128) && isCurrency3(p.Currency) &&
		required(p.Provider, 64) && p.Amount >= 0 && p.PaymentDt >= 0 && atMost(p.Bank, 64) &&
		p.DeliveryCost >= 0 && p.GoodsTotal >= 0 && p.CustomFee >= 0 &&
		o.Items != nil && len(o.Items) >= 1 && len(o.Items) <= 1000 &&
		atMost(o.Locale, 16) && atMost(o.InternalSignature, 256) && required(o.CustomerID, 128) &&
		atMost(o.DeliveryService, 128) && atMost(o.ShardKey, 16) && o.SmID >= 0 &&
		o.DateCreated != (time.Time{}) && atMost(o.OofShard, 16)) {
		return false
	}
	for i := range o.Items {
		it := &o.Items[i]
		if !(it.ChrtID >= 0 && atMost(it.TrackNumber, 128) && it.Price >= 0 && atMost(it.Rid, 128) &&
			atMost(it.Name, 512) && it.Sale >= 0 && it.Sale <= 100 && atMost(it.Size, 32) &&
			it.TotalPrice >= 0 && it.NmID >= 0 && atMost(it.Brand, 256)) {
			return false
		}
	}
	return true
}

// atMost is the tag max=n of a string: at most n characters (runes).
func atMost(s string, n int) bool {
	return len(s) <= n || utf8.RuneCountInString(s) <= n
}

// required is the tags required,max=n of a string.
func required(s string, n int) bool { return s != "" && atMost(s, n) }

// plainEmail reports whether s is an address of the plain form
// local@label.label…tld: the local part dot-separated runs of ASCII letters,
// digits, '_', '+' and '-'; domain labels of ASCII letters and digits with '-'
// inside; at least two labels, the last of letters only. Every such address
// passes the validator's email rule (net/mail and its RFC 5322 expression);
// others (quoted local parts, non-ASCII, IP literals) go to the validator.
func plainEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	for run := range strings.SplitSeq(local, ".") {
		if run == "" {
			return false
		}
		for i := 0; i < len(run); i++ {
			if c := run[i]; !isAlnum(c) && c != '_' && c != '+' && c != '-' {
				return false
			}
		}
	}
	labels := 0
	last := ""
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
		labels++
		last = label
	}
	if labels < 2 {
		return false
	}
	for i := 0; i < len(last); i++ {
		if c := last[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z'
}

// nulField returns the JSON path of the first string holding a NUL character, or "".
// PostgreSQL text cannot hold NUL and the driver would silently drop it, so such an
// order is refused instead of stored altered.
func nulField(o *Order) string {
	named := func(pairs ...string) string {
		for i := 0; i+1 < len(pairs); i += 2 {
			if strings.IndexByte(pairs[i+1], 0) >= 0 {
				return pairs[i]
			}
		}
		return ""
	}
	d, p := &o.Delivery, &o.Payment
	if f := named("order_uid", o.OrderUID, "track_number", o.TrackNumber, "entry", o.Entry,
		"delivery.name", d.Name, "delivery.phone", d.Phone, "delivery.zip", d.Zip, "delivery.city", d.City,
		"delivery.address", d.Address, "delivery.region", d.Region, "delivery.email", d.Email,
		"payment.transaction", p.Transaction, "payment.request_id", p.RequestID, "payment.currency", p.Currency,
		"payment.provider", p.Provider, "payment.bank", p.Bank,
		"locale", o.Locale, "internal_signature", o.InternalSignature, "customer_id", o.CustomerID,
		"delivery_service", o.DeliveryService, "shardkey", o.ShardKey, "oof_shard", o.OofShard); f != "" {
		return f
	}
	for i := range o.Items {
		it := &o.Items[i]
		if f := named("track_number", it.TrackNumber, "rid", it.Rid, "name", it.Name, "size", it.Size, "brand", it.Brand); f != "" {
			return fmt.Sprintf("items[%d].%s", i, f)
		}
	}
	return ""
}

// fieldError translates the first validator error into an *InvalidError.
func fieldError(o *Order, fe validator.FieldError) *InvalidError {
	field := fe.Namespace()
	if _, rest, ok := strings.Cut(field, "."); ok {
		field = rest // drop the leading "Order."
	}
	// A missing (or null, or empty) delivery or payment object shows up as a
	// required member of it; name the object instead.
	switch {
	case strings.HasPrefix(field, "delivery.") && o.Delivery == (Delivery{}):
		return validationErr("delivery", "required object is missing or empty")
	case strings.HasPrefix(field, "payment.") && o.Payment == (Payment{}):
		return validationErr("payment", "required object is missing or empty")
	}
	return validationErr(field, reasonFor(fe))
}

func reasonFor(fe validator.FieldError) string {
	param := fe.Param()
	kind := fe.Kind()
	switch fe.Tag() {
	case "required":
		if kind == reflect.Slice {
			return "required array is missing or null"
		}
		return "required field is missing or empty"
	case "min":
		if kind == reflect.Slice {
			return "must have at least " + param + " element(s)"
		}
		return "must be at least " + param + " characters long"
	case "max":
		if kind == reflect.Slice {
			return "must have at most " + param + " elements"
		}
		return "must be at most " + param + " characters long"
	case "gte":
		if param == "0" {
			return fmt.Sprintf("must not be negative, got %v", fe.Value())
		}
		return fmt.Sprintf("must be at least %s, got %v", param, fe.Value())
	case "lte":
		return fmt.Sprintf("must be at most %s, got %v", param, fe.Value())
	case "email":
		return "not a valid email address"
	case "uid":
		return "must be 1..64 letters, digits, '-' or '_'"
	case "currency3":
		return fmt.Sprintf("must be 3 upper-case letters (ISO 4217), got %q", fe.Value())
	}
	return "fails rule " + fe.Tag()
}

// checkTotals applies the item and money consistency rules. It assumes the field rules
// passed, so every amount is non-negative and every sale is in 0..100.
func checkTotals(o *Order) error {
	var sum int64
	for i := range o.Items {
		it := &o.Items[i]
		if *it == (Item{}) {
			return validationErr(fmt.Sprintf("items[%d]", i), "item is empty")
		}
		want := discounted(it.Price, it.Sale)
		if d := it.TotalPrice - want; d < -1 || d > 1 {
			return validationErr(fmt.Sprintf("items[%d].total_price", i),
				fmt.Sprintf("%d does not match price %d with sale %d%% (want %d, ±1 for rounding)", it.TotalPrice, it.Price, it.Sale, want))
		}
		var ok bool
		if sum, ok = addNonNeg(sum, it.TotalPrice); !ok {
			return validationErr(fmt.Sprintf("items[%d].total_price", i), "sum of the items' total_price overflows int64")
		}
	}
	p := &o.Payment
	if p.GoodsTotal != sum {
		return validationErr("payment.goods_total",
			fmt.Sprintf("%d does not equal the sum of the items' total_price %d", p.GoodsTotal, sum))
	}
	want, ok1 := addNonNeg(p.GoodsTotal, p.DeliveryCost)
	want, ok2 := addNonNeg(want, p.CustomFee)
	if !ok1 || !ok2 {
		return validationErr("payment.amount", "goods_total + delivery_cost + custom_fee overflows int64")
	}
	if p.Amount != want {
		return validationErr("payment.amount",
			fmt.Sprintf("%d does not equal goods_total %d + delivery_cost %d + custom_fee %d = %d",
				p.Amount, p.GoodsTotal, p.DeliveryCost, p.CustomFee, want))
	}
	return nil
}

// discounted returns price*(100-sale)/100 rounded down, for price >= 0 and sale in
// 0..100, without overflowing: with price = 100q + r it is q*(100-sale) + r*(100-sale)/100.
func discounted(price, sale int64) int64 {
	keep := 100 - sale
	return price/100*keep + price%100*keep/100
}

// addNonNeg adds two non-negative numbers and reports whether the sum fits in int64.
func addNonNeg(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

func validationErr(field, reason string) *InvalidError {
	return &InvalidError{Class: ClassValidation, Field: field, Reason: reason}
}
