package orders

import (
	"strings"
	"unicode/utf8"
)

// decodeFast decodes raw into o when raw is an order in the plain form that
// producers send: one object whose members are the model's, each at most once,
// strings valid UTF-8, integers without fraction or exponent, no nulls, a
// date_created that is RFC 3339. It reports false for anything else, and the
// caller then leaves the decision (and the error's wording) to the JSON v2
// decoder, which is stricter about nothing this accepts. It exists because the
// reflection decoder, with one allocation per string, was the largest cost of
// the ingest flow per order (issue 14's profile).
//
// The strings of o share one copy of raw (one allocation instead of thirty),
// except order_uid, which gets its own: it is the one string kept long after
// the order (a cache key), and must not pin the whole message.
//
// TestDecodeFastAgreesWithUnmarshal and FuzzDecodeFast hold it to the JSON v2
// decoder: whenever decodeFast accepts, Unmarshal gives the same Order.
func decodeFast(raw []byte, o *Order) bool {
	d := fastDecoder{s: string(raw)}
	if !object(&d, d.orderMember, o) {
		return false
	}
	d.space()
	if d.i != len(d.s) {
		return false
	}
	o.OrderUID = strings.Clone(o.OrderUID)
	return true
}

type fastDecoder struct {
	s string
	i int
}

func (d *fastDecoder) space() {
	s, i := d.s, d.i
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	d.i = i
}

// next skips whitespace and consumes c if it comes next.
func (d *fastDecoder) next(c byte) bool {
	d.space()
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads {"name": value, ...}, calling member for each name; member
// reads the value and reports false for a name it does not know or a value it
// cannot take. A name seen twice stops it (the v2 decoder refuses duplicates).
func object[T any](d *fastDecoder, member func(name string, v T) (bit uint32, ok bool), v T) bool {
	if !d.next('{') {
		return false
	}
	var seen uint32
	if d.next('}') {
		return true
	}
	for {
		name, ok := d.str()
		if !ok || !d.next(':') {
			return false
		}
		bit, ok := member(name, v)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.next(',') {
			continue
		}
		return d.next('}')
	}
}

// str reads a string: valid UTF-8, no control characters, escapes decoded
// (in a copy of its own; an escape the v2 decoder might treat otherwise, such
// as a lone surrogate, stops it).
func (d *fastDecoder) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	start := d.i
	ascii := true
	for {
		s, i := d.s, d.i
		for i < len(s) && plainASCII[s[i]] {
			i++
		}
		d.i = i
		if d.i == len(d.s) {
			return "", false
		}
		switch c := d.s[d.i]; {
		case c == '"':
			v := d.s[start:d.i]
			d.i++
			return v, ascii || utf8.ValidString(v)
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		}
		ascii = false // a byte >= 0x80
		d.i++
	}
}

// plainASCII[c] is true for the bytes a string holds as they are: printable
// ASCII other than '"' and '\\'.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escaped finishes a string begun at start that holds an escape at d.i.
func (d *fastDecoder) escaped(start int) (string, bool) {
	b := []byte(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return string(b), utf8.Valid(b)
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.s) {
			return "", false
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if r >= 0xd800 && r < 0xdc00 { // a high surrogate: its low half must follow
				if d.i+1 >= len(d.s) || d.s[d.i] != '\\' || d.s[d.i+1] != 'u' {
					return "", false
				}
				d.i += 2
				lo, ok := d.hex4()
				if !ok || lo < 0xdc00 || lo >= 0xe000 {
					return "", false
				}
				r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
			} else if r >= 0xdc00 && r < 0xe000 {
				return "", false
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

// hex4 reads the four hex digits of a \u escape.
func (d *fastDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(d.s[d.i : d.i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			c = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}

// plainRFC3339 reports whether s has the form YYYY-MM-DDTHH:MM:SS[.F{1,9}]
// followed by Z or ±HH:MM with the offset's hour below 24 and minute below 60:
// the timestamps on which time.Time's UnmarshalText and the v2 decoder (which
// adds those checks to it) agree.
func plainRFC3339(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return false
	}
	for i := 0; i < len(head); i++ {
		if c := s[i]; head[i] == 'd' && (c < '0' || c > '9') || head[i] != 'd' && c != head[i] {
			return false
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		isDigit(rest[1]) && isDigit(rest[2]) && isDigit(rest[4]) && isDigit(rest[5]) &&
		(rest[1]-'0')*10+rest[2]-'0' < 24 && (rest[4]-'0')*10+rest[5]-'0' < 60
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// int reads an integer in the int64 range: -?(0|[1-9][0-9]*), not followed by
// a fraction or an exponent.
func (d *fastDecoder) int() (int64, bool) {
	d.space()
	neg := d.i < len(d.s) && d.s[d.i] == '-'
	if neg {
		d.i++
	}
	start := d.i
	var u uint64
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		if d.i-start == 19 { // a 20th digit is out of range, and would overflow u
			return 0, false
		}
		u = u*10 + uint64(d.s[d.i]-'0')
		d.i++
	}
	n := d.i - start
	if n == 0 || (n > 1 && d.s[start] == '0') {
		return 0, false
	}
	if d.i < len(d.s) {
		if c := d.s[d.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// setStr reads a string into *dst.
func (d *fastDecoder) setStr(dst *string) bool {
	v, ok := d.str()
	*dst = v
	return ok
}

func (d *fastDecoder) setInt(dst *int64) bool {
	v, ok := d.int()
	*dst = v
	return ok
}

// The bits of the members, for duplicates: the order's, the delivery's, the
// payment's and an item's each use their own object's set.
func (d *fastDecoder) orderMember(name string, o *Order) (uint32, bool) {
	switch name {
	case "order_uid":
		return 1 << 0, d.setStr(&o.OrderUID)
	case "track_number":
		return 1 << 1, d.setStr(&o.TrackNumber)
	case "entry":
		return 1 << 2, d.setStr(&o.Entry)
	case "delivery":
		return 1 << 3, object(d, d.deliveryMember, &o.Delivery)
	case "payment":
		return 1 << 4, object(d, d.paymentMember, &o.Payment)
	case "items":
		return 1 << 5, d.items(o)
	case "locale":
		return 1 << 6, d.setStr(&o.Locale)
	case "internal_signature":
		return 1 << 7, d.setStr(&o.InternalSignature)
	case "customer_id":
		return 1 << 8, d.setStr(&o.CustomerID)
	case "delivery_service":
		return 1 << 9, d.setStr(&o.DeliveryService)
	case "shardkey":
		return 1 << 10, d.setStr(&o.ShardKey)
	case "sm_id":
		return 1 << 11, d.setInt(&o.SmID)
	case "date_created":
		s, ok := d.str()
		if !ok || len(s) > 64 || !plainRFC3339(s) {
			return 0, false
		}
		var b [64]byte // time.Time's UnmarshalText: RFC 3339, strictly
		return 1 << 12, o.DateCreated.UnmarshalText(append(b[:0], s...)) == nil
	case "oof_shard":
		return 1 << 13, d.setStr(&o.OofShard)
	}
	return 0, false
}

func (d *fastDecoder) deliveryMember(name string, v *Delivery) (uint32, bool) {
	switch name {
	case "name":
		return 1 << 0, d.setStr(&v.Name)
	case "phone":
		return 1 << 1, d.setStr(&v.Phone)
	case "zip":
		return 1 << 2, d.setStr(&v.Zip)
	case "city":
		return 1 << 3, d.setStr(&v.City)
	case "address":
		return 1 << 4, d.setStr(&v.Address)
	case "region":
		return 1 << 5, d.setStr(&v.Region)
	case "email":
		return 1 << 6, d.setStr(&v.Email)
	}
	return 0, false
}

func (d *fastDecoder) paymentMember(name string, v *Payment) (uint32, bool) {
	switch name {
	case "transaction":
		return 1 << 0, d.setStr(&v.Transaction)
	case "request_id":
		return 1 << 1, d.setStr(&v.RequestID)
	case "currency":
		return 1 << 2, d.setStr(&v.Currency)
	case "provider":
		return 1 << 3, d.setStr(&v.Provider)
	case "amount":
		return 1 << 4, d.setInt(&v.Amount)
	case "payment_dt":
		return 1 << 5, d.setInt(&v.PaymentDt)
	case "bank":
		return 1 << 6, d.setStr(&v.Bank)
	case "delivery_cost":
		return 1 << 7, d.setInt(&v.DeliveryCost)
	case "goods_total":
		return 1 << 8, d.setInt(&v.GoodsTotal)
	case "custom_fee":
		return 1 << 9, d.setInt(&v.CustomFee)
	}
	return 0, false
}

func (d *fastDecoder) itemMember(name string, v *Item) (uint32, bool) {
	switch name {
	case "chrt_id":
		return 1 << 0, d.setInt(&v.ChrtID)
	case "track_number":
		return 1 << 1, d.setStr(&v.TrackNumber)
	case "price":
		return 1 << 2, d.setInt(&v.Price)
	case "rid":
		return 1 << 3, d.setStr(&v.Rid)
	case "name":
		return 1 << 4, d.setStr(&v.Name)
	case "sale":
		return 1 << 5, d.setInt(&v.Sale)
	case "size":
		return 1 << 6, d.setStr(&v.Size)
	case "total_price":
		return 1 << 7, d.setInt(&v.TotalPrice)
	case "nm_id":
		return 1 << 8, d.setInt(&v.NmID)
	case "brand":
		return 1 << 9, d.setStr(&v.Brand)
	case "status":
		return 1 << 10, d.setInt(&v.Status)
	}
	return 0, false
}

// items reads the item array; [] is an empty list, as the v2 decoder makes it.
func (d *fastDecoder) items(o *Order) bool {
	if !d.next('[') {
		return false
	}
	o.Items = make([]Item, 0, 8)
	if d.next(']') {
		return true
	}
	for {
		o.Items = append(o.Items, Item{})
		if !object(d, d.itemMember, &o.Items[len(o.Items)-1]) {
			return false
		}
		if d.next(',') {
			continue
		}
		return d.next(']')
	}
}
