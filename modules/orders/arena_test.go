package orders

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestDecodeFastGivesTheUIDItsOwnMemory: the uid outlives the order (a cache
// key), so it must not point into the message copy the other strings share,
// which it would keep alive whole.
func TestDecodeFastGivesTheUIDItsOwnMemory(t *testing.T) {
	raw := Sample()
	var o Order
	if !decodeFast(raw, &o) {
		t.Fatal("the fast decoder refuses the sample")
	}
	addr := func(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }
	// the copy of the message, located by where the entry's value sits in it
	at := bytes.Index(raw, []byte(`"entry": "`+o.Entry+`"`))
	if at < 0 {
		t.Fatal("the sample's entry is not where this test looks for it")
	}
	start := addr(o.Entry) - uintptr(at+len(`"entry": "`))
	end := start + uintptr(len(raw))
	if a := addr(o.TrackNumber); a < start || a >= end {
		t.Fatal("the strings do not share one message copy: this test no longer checks anything")
	}
	if a := addr(o.OrderUID); a >= start && a < end {
		t.Fatalf("order_uid %q points into the message copy", o.OrderUID)
	}
}
