package ordersdb

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/orderflow/orders-service/modules/orders"
)

// cursorPrefix versions the cursor format so it can change without misreading
// cursors handed out by an older version.
const cursorPrefix = "v1:"

// encodeCursor returns the opaque cursor of a page that ended at sequence seq.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

// decodeCursor returns the sequence a cursor points after, or orders.ErrInvalidCursor.
func decodeCursor(cursor string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, orders.ErrInvalidCursor
	}
	rest, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, orders.ErrInvalidCursor
	}
	seq, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || seq < 1 || strconv.FormatInt(seq, 10) != rest {
		return 0, orders.ErrInvalidCursor
	}
	return seq, nil
}
