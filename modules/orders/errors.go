package orders

import (
	"errors"
	"fmt"
)

// Error classes of invalid input; they are the x-error-class values of DLQ records.
const (
	ClassDecode     = "decode"
	ClassValidation = "validation"
)

// InvalidError is a permanent input error: the message or request can never be
// stored as it is. Field names the offending JSON path (e.g. "payment.goods_total")
// when there is one.
type InvalidError struct {
	Class  string // ClassDecode or ClassValidation
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Class + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s: %s", e.Class, e.Field, e.Reason)
}

// ClassKey is the error class of records whose key does not identify the order:
// a key other than the value's order_uid, or a tombstone without a valid uid key.
const ClassKey = "key"

// ErrOverloaded means a read was shed: the database connections the API's reads
// may use were all busy for longer than the bounded wait. Nothing was read; the
// client should try again shortly (HTTP 503 with Retry-After).
var ErrOverloaded = errors.New("too many reads at once: try again shortly")

// ErrLogUnavailable means an API write could not be appended to the orders
// topic: the broker did not take it in time. Nothing was written.
var ErrLogUnavailable = errors.New("the order log (Kafka) did not take the write; try again later")

// PendingError answers an API write that was appended to the orders topic (its
// place there is Version) but not applied within the bounded wait: it will be.
type PendingError struct {
	UID     string
	Version Version
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("write of order %s accepted at version %s, not yet applied", e.UID, e.Version)
}

// RejectedError answers an API write that the pipeline dead-lettered: appended,
// but refused when applied (e.g. by a database constraint).
type RejectedError struct {
	Class  string
	Reason string
}

func (e *RejectedError) Error() string { return "write rejected (" + e.Class + "): " + e.Reason }
