package orders

import (
	"cmp"
	"errors"
	"strconv"
	"strings"
)

// Version is the place of one version of an order in the history of the orders
// topic (see "Versions" in the README). Records of the orders topic are keyed by
// order uid, so all versions of an order share a partition and the version is the
// record's offset there. A replayed dead letter keeps the position it had when it
// was first consumed (its x-source-* headers), so replaying an old version never
// overwrites a newer one.
//
// Two versions on different partitions (the same uid produced with another key,
// or the partition count changed) are ordered by their record timestamps, then by
// partition number; the service logs and counts every such comparison.
type Version struct {
	Partition int32
	Offset    int64
	// Time is the record's timestamp in Unix milliseconds; it only orders
	// versions of different partitions.
	Time int64
}

// Compare returns -1, 0 or +1 as v is older than, the same as, or newer than w.
// The zero Version (nothing known) is older than every version of a partition.
func (v Version) Compare(w Version) int {
	if v.IsZero() || w.IsZero() {
		return cmp.Compare(boolInt(!v.IsZero()), boolInt(!w.IsZero()))
	}
	if v.Partition == w.Partition {
		return cmp.Compare(v.Offset, w.Offset)
	}
	if c := cmp.Compare(v.Time, w.Time); c != 0 {
		return c
	}
	return cmp.Compare(v.Partition, w.Partition)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Newer reports whether v is newer than w.
func (v Version) Newer(w Version) bool { return v.Compare(w) > 0 }

// CrossPartition reports whether comparing v with w goes by timestamps, because
// both are known and on different partitions.
func (v Version) CrossPartition(w Version) bool {
	return v.Partition != w.Partition && !v.IsZero() && !w.IsZero()
}

// IsZero reports whether v is the zero Version: no version known.
func (v Version) IsZero() bool { return v == Version{} }

// String formats v as "partition.offset", the X-Order-Version header and the ETag.
func (v Version) String() string {
	return strconv.FormatInt(int64(v.Partition), 10) + "." + strconv.FormatInt(v.Offset, 10)
}

// ErrInvalidVersion means a version string is not "partition.offset".
var ErrInvalidVersion = errors.New(`invalid version: want "partition.offset"`)

// ParseVersion parses the String form of a version (its Time is 0).
func ParseVersion(s string) (Version, error) {
	p, o, ok := strings.Cut(s, ".")
	if !ok {
		return Version{}, ErrInvalidVersion
	}
	part, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return Version{}, ErrInvalidVersion
	}
	off, err := strconv.ParseInt(o, 10, 64)
	if err != nil {
		return Version{}, ErrInvalidVersion
	}
	return Version{Partition: int32(part), Offset: off}, nil
}
