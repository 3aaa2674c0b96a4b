package orders

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// DefaultMaxMessageBytes is the default bound on the size of one encoded order (1 MiB).
const DefaultMaxMessageBytes = 1 << 20

// decodeOptions makes the decoder strict. Besides rejecting unknown members, the
// JSON v2 decoder by default matches names case-sensitively, rejects duplicate
// names, rejects invalid UTF-8 and rejects any data after the top-level value,
// and reports every error with a JSON Pointer to the offending value.
var decodeOptions = json.RejectUnknownMembers(true)

var timeType = reflect.TypeFor[time.Time]()

// Decode strictly decodes one order from raw, the JSON shape of the canonical sample (Sample).
// maxBytes bounds len(raw); maxBytes <= 0 means DefaultMaxMessageBytes.
// It rejects empty input, input over the bound (checked before parsing), input
// that is not UTF-8, malformed JSON, a top level that is not an object, unknown or
// duplicate members, values of the wrong type, data after the object and a
// date_created that is not RFC 3339. Every error is an *InvalidError of class
// ClassDecode whose Field is the JSON path when one is known; the returned Order
// is then the zero value. Decode does not check the business rules: see Validate,
// or Parse for both.
func Decode(raw []byte, maxBytes int) (Order, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMessageBytes
	}
	if len(raw) > maxBytes {
		return Order{}, decodeErr("", fmt.Sprintf("message is %d bytes, over the %d-byte limit", len(raw), maxBytes))
	}
	if err := checkTopLevel(raw); err != nil {
		return Order{}, err
	}
	var o Order
	if decodeFast(raw, &o) {
		return o, nil
	}
	o = Order{}
	if err := json.Unmarshal(raw, &o, decodeOptions); err != nil {
		return Order{}, classifyDecodeError(raw, err)
	}
	return o, nil
}

// checkTopLevel rejects empty input and any top-level value that is not an object,
// so that e.g. "null" (which would decode into a zero Order) never passes.
func checkTopLevel(raw []byte) error {
	i := 0
	for i < len(raw) && isJSONSpace(raw[i]) {
		i++
	}
	if i == len(raw) {
		if len(raw) == 0 {
			return decodeErr("", "empty message")
		}
		return decodeErr("", "empty message (only whitespace)")
	}
	var shape string
	switch c := raw[i]; {
	case c == '{':
		return nil
	case c == '[':
		shape = "array"
	case c == '"':
		shape = "string"
	case c == 't' || c == 'f':
		shape = "boolean"
	case c == 'n':
		shape = "null"
	case c == '-' || (c >= '0' && c <= '9'):
		shape = "number"
	default:
		if off, bad := firstInvalidUTF8(raw); bad {
			return decodeErr("", fmt.Sprintf("not valid UTF-8 (binary data?): invalid byte 0x%02x at offset %d", raw[off], off))
		}
		r, _ := utf8.DecodeRune(raw[i:])
		return decodeErr("", fmt.Sprintf("malformed JSON: invalid character %q at offset %d, want an object", r, i))
	}
	return decodeErr("", "unknown top-level shape: "+shape+", want an object")
}

// classifyDecodeError turns an error of the JSON decoder into an *InvalidError.
// It runs only on the error path, so it may rescan raw.
func classifyDecodeError(raw []byte, err error) error {
	if off, bad := firstInvalidUTF8(raw); bad {
		return decodeErr("", fmt.Sprintf("not valid UTF-8 (binary data?): invalid byte 0x%02x at offset %d", raw[off], off))
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		field := jsonPath(syn.JSONPointer)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return decodeErr(field, "duplicate member name")
		case errors.Is(syn.Err, io.ErrUnexpectedEOF):
			return decodeErr(field, "malformed JSON: unexpected end of input (truncated message?)")
		case syn.JSONPointer == "" && trailingDataAt(raw, syn.ByteOffset):
			return decodeErr("", fmt.Sprintf("trailing data after the top-level object at offset %d", syn.ByteOffset))
		}
		return decodeErr(field, fmt.Sprintf("malformed JSON at offset %d: %v", syn.ByteOffset, syn.Err))
	}
	var sem *json.SemanticError
	if errors.As(err, &sem) {
		field := jsonPath(sem.JSONPointer)
		switch {
		case errors.Is(sem.Err, json.ErrUnknownName):
			return decodeErr(field, "unknown field")
		case sem.GoType == timeType:
			return decodeErr(field, fmt.Sprintf("want an RFC 3339 timestamp string, got %s", describeJSON(raw, sem)))
		case sem.GoType != nil && sem.GoType.Kind() == reflect.Int64 && sem.JSONKind == '0':
			return decodeErr(field, fmt.Sprintf("want an integer in the int64 range, got %s", describeJSON(raw, sem)))
		case sem.GoType != nil:
			return decodeErr(field, fmt.Sprintf("wrong type: want %s, got %s", describeGoType(sem.GoType), describeJSON(raw, sem)))
		}
		return decodeErr(field, "cannot decode: "+sem.Error())
	}
	return decodeErr("", "cannot decode: "+err.Error())
}

// trailingDataAt reports whether raw holds one complete JSON value that ends at or
// before offset, i.e. an error at offset is about data after the top-level value.
func trailingDataAt(raw []byte, offset int64) bool {
	d := jsontext.NewDecoder(bytes.NewReader(raw))
	if err := d.SkipValue(); err != nil {
		return false
	}
	return offset >= d.InputOffset()
}

// jsonPath renders a JSON Pointer such as "/items/0/price" as "items[0].price".
// Only "items" is an array in the order shape, so only its elements become indexes.
func jsonPath(p jsontext.Pointer) string {
	if p == "" {
		return ""
	}
	var b strings.Builder
	prev := ""
	depth := 0
	for tok := range p.Tokens() {
		if depth == 1 && prev == "items" && isDigits(tok) {
			b.WriteString("[" + tok + "]")
		} else {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(tok)
		}
		prev = tok
		depth++
	}
	return b.String()
}

// describeJSON names the kind of the offending JSON value and, when it is a short
// scalar, quotes it.
func describeJSON(raw []byte, sem *json.SemanticError) string {
	kind := "JSON value"
	switch sem.JSONKind {
	case '"':
		kind = "string"
	case '0':
		kind = "number"
	case 't', 'f':
		kind = "boolean"
	case 'n':
		kind = "null"
	case '{':
		kind = "object"
	case '[':
		kind = "array"
	}
	v := sem.JSONValue
	if len(v) == 0 && sem.JSONKind != '{' && sem.JSONKind != '[' && sem.ByteOffset >= 0 && sem.ByteOffset < int64(len(raw)) {
		// ByteOffset is the start of the value; read it back (error path only).
		v, _ = jsontext.NewDecoder(bytes.NewReader(raw[sem.ByteOffset:])).ReadValue()
	}
	if len(v) > 0 && len(v) <= 64 {
		return kind + " " + string(v)
	}
	return kind
}

func describeGoType(t reflect.Type) string {
	switch {
	case t == timeType:
		return "an RFC 3339 timestamp string"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Slice:
		return "an array"
	case t.Kind() == reflect.Struct:
		return "an object"
	}
	return t.String()
}

// firstInvalidUTF8 returns the offset of the first byte of raw that is not part of
// a valid UTF-8 sequence.
func firstInvalidUTF8(raw []byte) (int, bool) {
	if utf8.Valid(raw) {
		return 0, false
	}
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n <= 1 {
			return i, true
		}
		i += n
	}
	return 0, false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func decodeErr(field, reason string) *InvalidError {
	return &InvalidError{Class: ClassDecode, Field: field, Reason: reason}
}
