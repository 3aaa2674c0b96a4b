package orders

import (
	"context"
	"errors"
)

// Domain errors. One place (the HTTP error handler) maps them to statuses.
var (
	// ErrNotFound means no order with that uid exists.
	ErrNotFound = errors.New("order not found")
	// ErrInvalidUID means a uid is not 1..64 letters, digits, '-' or '_'.
	ErrInvalidUID = errors.New("invalid order uid: want 1..64 letters, digits, '-' or '_'")
	// ErrInvalidCursor means a listing cursor could not be decoded.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrInvalidLimit means a listing limit is outside 1..MaxListLimit.
	ErrInvalidLimit = errors.New("invalid limit: want 1..1000")
)

// MaxListLimit is the largest page a listing returns.
const MaxListLimit = 1000

// ValidUID reports whether uid is 1..64 characters of letters, digits, '-' and '_'.
func ValidUID(uid string) bool {
	if len(uid) == 0 || len(uid) > 64 {
		return false
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Source says where a version of an order came from. Kafka versions carry their
// partition and offset; versions written through the API carry Partition = -1.
// The store refuses to replace a row with a version from the same partition and a
// lower or equal offset, so replays and redeliveries never move an order back.
type Source struct {
	Partition int32
	Offset    int64
}

// APISource marks a version written through the HTTP API.
var APISource = Source{Partition: -1, Offset: -1}

// Record is one version of an order to be written, with its source position.
type Record struct {
	Order  Order
	Source Source
}

// Page is one page of a newest-first listing. NextCursor is empty on the last page.
type Page struct {
	Orders     []Order
	NextCursor string
}

// Store is the persistence contract for orders. Implementations are safe for
// concurrent use; every method honours ctx cancellation.
type Store interface {
	// UpsertBatch writes all records in one transaction, de-duplicated by uid (the
	// record with the highest offset wins), skipping records older than the stored
	// version. It returns the uids whose stored version changed. On error nothing
	// of the batch is written.
	UpsertBatch(ctx context.Context, recs []Record) (applied []string, err error)
	// Get returns the order with uid, or ErrNotFound.
	Get(ctx context.Context, uid string) (Order, error)
	// List returns up to limit orders, newest first (by first ingestion), starting
	// after cursor ("" = from the newest). Bad cursor: ErrInvalidCursor.
	List(ctx context.Context, limit int, cursor string) (Page, error)
	// Put replaces (or creates) an order written through the API. An existing
	// row keeps its source position, so a replay of older Kafka versions does not
	// undo the change.
	Put(ctx context.Context, o Order) error
	// Delete removes the order and its delivery, payment and items, or returns ErrNotFound.
	Delete(ctx context.Context, uid string) error
}
