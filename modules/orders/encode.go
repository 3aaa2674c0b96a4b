package orders

import (
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// EncodeJSON returns o's JSON encoding (Sample's shape), byte for byte what
// encoding/json's Marshal gives for it: the same field order, the same escapes
// (<, >, & and U+2028/U+2029 escaped), a nil item list as null and
// date_created in RFC 3339 with nanoseconds. Invalid UTF-8, which no decoded or
// stored order holds, becomes U+FFFD. It is the cache's encoder, written out
// because reflection-based marshaling cost a fifth of the ingest flow's CPU per
// order (issue 14's profile); TestEncodeJSONMatchesEncodingJSON and
// FuzzEncodeJSON hold it to encoding/json. A date_created outside years 0–9999
// or with a zone offset of 24 hours or more is an error, as it is for
// encoding/json.
func EncodeJSON(o *Order) ([]byte, error) {
	bp := encodeBufs.Get().(*[]byte)
	buf, err := AppendJSON((*bp)[:0], o)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(buf))
	copy(out, buf)
	if cap(buf) <= maxPooledEncodeBuf {
		*bp = buf
		encodeBufs.Put(bp)
	}
	return out, nil
}

// maxPooledEncodeBuf keeps an order of a thousand long items from pinning its
// buffer in the pool.
const maxPooledEncodeBuf = 64 << 10

var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// AppendJSON appends o's JSON encoding (EncodeJSON's bytes) to dst.
func AppendJSON(dst []byte, o *Order) ([]byte, error) {
	dst = append(dst, `{"order_uid":`...)
	dst = appendJSONString(dst, o.OrderUID)
	dst = append(dst, `,"track_number":`...)
	dst = appendJSONString(dst, o.TrackNumber)
	dst = append(dst, `,"entry":`...)
	dst = appendJSONString(dst, o.Entry)

	d := &o.Delivery
	dst = append(dst, `,"delivery":{"name":`...)
	dst = appendJSONString(dst, d.Name)
	dst = append(dst, `,"phone":`...)
	dst = appendJSONString(dst, d.Phone)
	dst = append(dst, `,"zip":`...)
	dst = appendJSONString(dst, d.Zip)
	dst = append(dst, `,"city":`...)
	dst = appendJSONString(dst, d.City)
	dst = append(dst, `,"address":`...)
	dst = appendJSONString(dst, d.Address)
	dst = append(dst, `,"region":`...)
	dst = appendJSONString(dst, d.Region)
	dst = append(dst, `,"email":`...)
	dst = appendJSONString(dst, d.Email)

	p := &o.Payment
	dst = append(dst, `},"payment":{"transaction":`...)
	dst = appendJSONString(dst, p.Transaction)
	dst = append(dst, `,"request_id":`...)
	dst = appendJSONString(dst, p.RequestID)
	dst = append(dst, `,"currency":`...)
	dst = appendJSONString(dst, p.Currency)
	dst = append(dst, `,"provider":`...)
	dst = appendJSONString(dst, p.Provider)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendInt(dst, p.Amount, 10)
	dst = append(dst, `,"payment_dt":`...)
	dst = strconv.AppendInt(dst, p.PaymentDt, 10)
	dst = append(dst, `,"bank":`...)
	dst = appendJSONString(dst, p.Bank)
	dst = append(dst, `,"delivery_cost":`...)
	dst = strconv.AppendInt(dst, p.DeliveryCost, 10)
	dst = append(dst, `,"goods_total":`...)
	dst = strconv.AppendInt(dst, p.GoodsTotal, 10)
	dst = append(dst, `,"custom_fee":`...)
	dst = strconv.AppendInt(dst, p.CustomFee, 10)

	dst = append(dst, `},"items":`...)
	if o.Items == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range o.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendItemJSON(dst, &o.Items[i])
		}
		dst = append(dst, ']')
	}

	dst = append(dst, `,"locale":`...)
	dst = appendJSONString(dst, o.Locale)
	dst = append(dst, `,"internal_signature":`...)
	dst = appendJSONString(dst, o.InternalSignature)
	dst = append(dst, `,"customer_id":`...)
	dst = appendJSONString(dst, o.CustomerID)
	dst = append(dst, `,"delivery_service":`...)
	dst = appendJSONString(dst, o.DeliveryService)
	dst = append(dst, `,"shardkey":`...)
	dst = appendJSONString(dst, o.ShardKey)
	dst = append(dst, `,"sm_id":`...)
	dst = strconv.AppendInt(dst, o.SmID, 10)
	dst = append(dst, `,"date_created":`...)
	var err error
	if dst, err = appendJSONTime(dst, o.DateCreated); err != nil {
		return nil, err
	}
	dst = append(dst, `,"oof_shard":`...)
	dst = appendJSONString(dst, o.OofShard)
	return append(dst, '}'), nil
}

func appendItemJSON(dst []byte, it *Item) []byte {
	dst = append(dst, `{"chrt_id":`...)
	dst = strconv.AppendInt(dst, it.ChrtID, 10)
	dst = append(dst, `,"track_number":`...)
	dst = appendJSONString(dst, it.TrackNumber)
	dst = append(dst, `,"price":`...)
	dst = strconv.AppendInt(dst, it.Price, 10)
	dst = append(dst, `,"rid":`...)
	dst = appendJSONString(dst, it.Rid)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, it.Name)
	dst = append(dst, `,"sale":`...)
	dst = strconv.AppendInt(dst, it.Sale, 10)
	dst = append(dst, `,"size":`...)
	dst = appendJSONString(dst, it.Size)
	dst = append(dst, `,"total_price":`...)
	dst = strconv.AppendInt(dst, it.TotalPrice, 10)
	dst = append(dst, `,"nm_id":`...)
	dst = strconv.AppendInt(dst, it.NmID, 10)
	dst = append(dst, `,"brand":`...)
	dst = appendJSONString(dst, it.Brand)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, it.Status, 10)
	return append(dst, '}')
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, quoted), with its errors: a year outside 0–9999 or a zone offset
// whose hour is outside 0–23, checked on the formatted bytes as the time
// package checks them.
func appendJSONTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, '"')
	start := len(dst)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	b := dst[start:]
	switch {
	case len(b) < len("2006-01-02T15:04:05Z") || b[len("9999")] != '-':
		return nil, fmt.Errorf("json: error calling MarshalJSON for type time.Time: year outside of range [0,9999]")
	case b[len(b)-1] != 'Z':
		c := b[len(b)-len("Z07:00")]
		h := b[len(b)-len("07:00"):]
		if '0' <= c && c <= '9' || (h[0]-'0')*10+(h[1]-'0') >= 24 {
			return nil, fmt.Errorf("json: error calling MarshalJSON for type time.Time: timezone hour outside of range [0,23]")
		}
	}
	return append(dst, '"'), nil
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] is true for the ASCII bytes encoding/json writes as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json quotes strings.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
