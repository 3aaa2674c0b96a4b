package orders

import (
	"context"
	"errors"
	"time"
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

// Record is one version of an order to be written: the order, or a tombstone
// (Deleted, with only Order.OrderUID set), at its version.
type Record struct {
	Order   Order
	Version Version
	Deleted bool
}

// UID returns the uid of the order the record is a version of.
func (r *Record) UID() string { return r.Order.OrderUID }

// Stored is what a store holds for one uid after a write: the version of the
// stored order or tombstone. The zero Version means nothing is known of the uid
// (no order, no tombstone: never written, or a tombstone purged).
type Stored struct {
	UID     string
	Version Version
	Deleted bool // Version is a tombstone's
	Changed bool // this call wrote it
	// Previous is, when Changed, the version this call replaced if it was on
	// another partition (zero otherwise): the same uid on two partitions.
	Previous Version
}

// Page is one page of a newest-first listing. NextCursor is empty on the last
// page. Versions[i] is the version of Orders[i].
type Page struct {
	Orders     []Order
	Versions   []Version
	NextCursor string
}

// Store is the persistence contract for orders. Implementations are safe for
// concurrent use; every method honours ctx cancellation.
type Store interface {
	// ApplyBatch writes recs in one transaction. They are de-duplicated by uid
	// (the newest version wins) and each is written only if it is newer than
	// what is stored for its uid (an order or a tombstone): an order replaces the
	// stored one, a tombstone deletes it and is kept (see PurgeTombstones) so
	// that older versions arriving later stay refused. It returns, for each uid
	// of recs, what is stored after the call. On error nothing of the batch is
	// written (or, if the commit's outcome is unknown, all of it may be).
	ApplyBatch(ctx context.Context, recs []Record) ([]Stored, error)
	// Get returns the order with uid and its version, or ErrNotFound with the
	// version of its tombstone (the zero Version when none is kept).
	Get(ctx context.Context, uid string) (Order, Version, error)
	// List returns up to limit orders, newest first (by first ingestion), starting
	// after cursor ("" = from the newest). Bad cursor: ErrInvalidCursor.
	List(ctx context.Context, limit int, cursor string) (Page, error)
	// PurgeTombstones forgets the tombstones of deletes applied before cutoff and
	// returns how many it removed. It works in chunks, each committed on its own,
	// and calls purged (when not nil) with the uids of each chunk once committed.
	PurgeTombstones(ctx context.Context, cutoff time.Time, purged func(uids []string)) (int64, error)
}

// Change is one entry of the change feed between instances: after a commit, the
// database holds Version of UID (Deleted: its tombstone). A cache holding an
// older version of UID must drop it.
type Change struct {
	UID     string
	Version Version
	Deleted bool
}
