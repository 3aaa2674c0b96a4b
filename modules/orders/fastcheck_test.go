package orders

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// leaf is one field of the model that a validate tag governs, reached from
// an Order by index path (items through Items[0]).
type leaf struct {
	name  string // JSON path, for failure messages
	tag   string
	index []int
	item  bool // a field of Items[0]
}

// leaves lists the model's fields in the order of the struct, with their tags.
func leaves(t testing.TB) []leaf {
	t.Helper()
	var out []leaf
	var walk func(typ reflect.Type, prefix string, index []int, item bool)
	walk = func(typ reflect.Type, prefix string, index []int, item bool) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			path := append(append([]int(nil), index...), i)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]():
				walk(f.Type, prefix+name+".", path, item)
			case f.Type.Kind() == reflect.Slice:
				out = append(out, leaf{prefix + name, f.Tag.Get("validate"), path, item})
				walk(f.Type.Elem(), prefix+name+"[0].", nil, true)
			default:
				out = append(out, leaf{prefix + name, f.Tag.Get("validate"), path, item})
			}
		}
	}
	walk(reflect.TypeFor[Order](), "", nil, false)
	if len(out) < 30 {
		t.Fatalf("found %d tagged fields in the model, want the whole model", len(out))
	}
	return out
}

func (l leaf) field(o *Order) reflect.Value {
	v := reflect.ValueOf(o).Elem()
	if l.item {
		v = v.FieldByName("Items").Index(0)
	}
	return v.FieldByIndex(l.index)
}

var tagNumber = regexp.MustCompile(`(?:max|min|lte|gte)=(\d+)`)

// stringCases are the values a string field is tried with: lengths around
// every bound of its tag and of the other fields' tags, in bytes and in
// multi-byte runes, and values of the formats the tags name.
func stringCases(tag string) []string {
	bounds := map[int]bool{1: true, 3: true, 16: true, 32: true, 64: true, 128: true, 256: true, 512: true}
	for _, m := range tagNumber.FindAllStringSubmatch(tag, -1) {
		n, _ := strconv.Atoi(m[1])
		bounds[n] = true
	}
	cases := []string{
		"", " ", "USD", "usd", "US", "USDD", "ÜSD", "a b", "a\x00b", "\xff",
		"ok-uid_1", strings.Repeat("u", 65),
	}
	for n := range bounds {
		for _, d := range []int{-1, 0, 1} {
			if n+d < 0 {
				continue
			}
			cases = append(cases, strings.Repeat("a", n+d), strings.Repeat("é", n+d), strings.Repeat("日", n+d))
		}
	}
	return append(cases, emailCases...)
}

// emailCases are addresses of every form the validator's email rule knows.
var emailCases = []string{
	"test@gmail.com", "a@b.cc", "first.last+tag@sub.example.org", "x_y-z@a-b.c-d.io", "A@B.CO",
	"a@b", "a@b.c1", "a@b.1c", "a@-b.com", "a@b-.com", "a@b..com", "a@.b.com", "a@b.com.", "@b.com",
	"a.@b.com", ".a@b.com", "a..b@c.com", "a b@c.com", "a@b c.com", `"quoted"@b.com`, `"a b"@c.com`,
	"a@[127.0.0.1]", "ü@b.com", "a@bü.com", "a@b.çom", "a!#$%&'*/=?^`{|}~@b.com", "a@b~c.com",
	"a@b.c", "a@" + strings.Repeat("x", 63) + ".com", "Name <a@b.com>", "a@b.com (comment)",
	"a@b.com\n", "\ta@b.com", "a@@b.com", "a@b@c.com", "a+@b.com", "-@b.com", "a@1.2.3.4",
	"a@b_c.com", "a@b.c_m", "a@b.-", "a@b.co-m", "a@b.C0",
	// well-formed addresses at the tag's length bound (max=256) and past it
	strings.Repeat("l", 244) + "@example.com", strings.Repeat("l", 245) + "@example.com",
	strings.Repeat("l", 260) + "@example.com",
}

func intCases() []int64 { return []int64{-1 << 63, -2, -1, 0, 1, 99, 100, 101, 1<<63 - 1} }

// agree fails if fieldRulesHold says yes where the validator says no, or says
// no where the validator says yes for an order whose email is plain or empty
// (the one place the fast check may leave the answer to the validator).
func agree(t *testing.T, o *Order, what string) {
	t.Helper()
	fast := fieldRulesHold(o)
	err := validate.Struct(o)
	switch {
	case fast && err != nil:
		t.Errorf("%s: the fast check accepts what the validator refuses: %v", what, err)
	case !fast && err == nil && (o.Delivery.Email == "" || plainEmail(o.Delivery.Email)):
		t.Errorf("%s: the fast check refuses what the validator accepts", what)
	}
}

func baseOrder(t testing.TB) Order {
	t.Helper()
	o, err := Parse(Sample(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !fieldRulesHold(&o) {
		t.Fatal("the fast check refuses the canonical sample")
	}
	return o
}

// cloneOrder copies o with its own items.
func cloneOrder(o Order) Order {
	o.Items = append([]Item(nil), o.Items...)
	return o
}

func TestFieldRulesHoldAgreesWithValidator(t *testing.T) {
	base := baseOrder(t)
	for _, l := range leaves(t) {
		kind := l.field(&base).Kind()
		switch {
		case kind == reflect.String:
			for _, s := range stringCases(l.tag) {
				o := cloneOrder(base)
				l.field(&o).SetString(s)
				agree(t, &o, fmt.Sprintf("%s (%s) = %q", l.name, l.tag, s))
			}
		case kind == reflect.Int64:
			for _, n := range intCases() {
				o := cloneOrder(base)
				l.field(&o).SetInt(n)
				agree(t, &o, fmt.Sprintf("%s (%s) = %d", l.name, l.tag, n))
			}
		case kind == reflect.Slice:
			for _, n := range []int{-1, 0, 1, 2, 999, 1000, 1001} {
				o := cloneOrder(base)
				o.Items = nil
				for range n {
					o.Items = append(o.Items, base.Items[0])
				}
				if n == 0 {
					o.Items = []Item{}
				}
				agree(t, &o, fmt.Sprintf("%s (%s) with %d elements (-1: null)", l.name, l.tag, n))
			}
		case l.field(&base).Type() == reflect.TypeFor[time.Time]():
			for _, tm := range []time.Time{{}, time.Unix(0, 0).UTC(), time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)), base.DateCreated} {
				o := cloneOrder(base)
				l.field(&o).Set(reflect.ValueOf(tm))
				agree(t, &o, fmt.Sprintf("%s (%s) = %v", l.name, l.tag, tm))
			}
		default:
			t.Fatalf("%s: a field of kind %s: teach this test its cases", l.name, kind)
		}
	}
	// the delivery and payment objects missing as a whole
	o := cloneOrder(base)
	o.Delivery = Delivery{}
	agree(t, &o, "no delivery")
	o = cloneOrder(base)
	o.Payment = Payment{}
	agree(t, &o, "no payment")
	// a bad item after good ones
	o = cloneOrder(base)
	o.Items = append(o.Items, base.Items[0], base.Items[0])
	o.Items[2].Sale = 101
	agree(t, &o, "items[2].sale = 101")
}

// TestPlainEmailIsUsed shows the fast path is not a formality: the sample's
// email and the generator's are plain, so the validator does not run for them.
func TestPlainEmailIsUsed(t *testing.T) {
	for _, e := range []string{"test@gmail.com", "mburton@hamilton.io", "first.last+tag@sub.example.org"} {
		if !plainEmail(e) {
			t.Errorf("plainEmail(%q) = false", e)
		}
	}
}

// FuzzFieldRulesHold compares the fast check with the validator on one field
// set to an arbitrary string and one to an arbitrary number.
func FuzzFieldRulesHold(f *testing.F) {
	for i, s := range emailCases {
		f.Add(uint8(i), s, uint8(i), int64(i)-2)
	}
	f.Add(uint8(0), strings.Repeat("é", 65), uint8(3), int64(101))
	all := leaves(f)
	var strs, ints []leaf
	base := baseOrder(f)
	for _, l := range all {
		switch l.field(&base).Kind() {
		case reflect.String:
			strs = append(strs, l)
		case reflect.Int64:
			ints = append(ints, l)
		}
	}
	f.Fuzz(func(t *testing.T, si uint8, s string, ni uint8, n int64) {
		o := cloneOrder(base)
		ls, ln := strs[int(si)%len(strs)], ints[int(ni)%len(ints)]
		ls.field(&o).SetString(s)
		ln.field(&o).SetInt(n)
		agree(t, &o, fmt.Sprintf("%s = %q, %s = %d", ls.name, s, ln.name, n))
	})
}
