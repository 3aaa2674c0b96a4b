package ordersdb

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a position in PostgreSQL's write-ahead log (the pg_lsn type): a byte
// offset, so a later position is a larger number and the difference of two is
// bytes of WAL.
type LSN uint64

// ParseLSN parses PostgreSQL's text form of a pg_lsn, "X/Y": the high and low 32
// bits in hexadecimal (e.g. "16/B374D848", as pg_current_wal_lsn() answers).
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("parse lsn %q: want X/Y in hexadecimal", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse lsn %q: want X/Y in hexadecimal", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse lsn %q: want X/Y in hexadecimal", s)
	}
	return LSN(h<<32 | l), nil
}

// String returns the LSN in PostgreSQL's text form, "X/Y" (upper-case hexadecimal,
// no leading zeros), which a ::pg_lsn cast accepts.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l))
}

// MarshalText implements encoding.TextMarshaler with String, so stats show "X/Y".
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }
