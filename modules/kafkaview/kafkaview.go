// Package kafkaview serves read-only views of the service's Kafka side for the
// web page and operators: the newest dead letters (GET /api/v1/dlq) and the
// consumer group's members (GET /api/v1/pipeline/group). Reading Kafka is slow
// next to an API read, so every read is bounded in time (503 past it), one runs
// at a time per view, and an answer is reused for a short while (TTL), then
// dropped. A dead-letter read is bounded in memory too: it keeps the newest
// MaxDLQLimit letters overall and at most ValueBudget bytes of their values.
package kafkaview

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Defaults and bounds of Options and of GET /api/v1/dlq?limit.
const (
	DefaultTimeout  = 3 * time.Second
	DefaultTTL      = time.Second
	DefaultDLQLimit = 50
	MaxDLQLimit     = 200
	// MaxValueBytes is how much of a letter's value is kept and answered: a
	// letter may be an oversized message of up to 16 MiB.
	MaxValueBytes = 64 << 10
	// ValueBudget bounds the bytes of values one dead-letter read keeps, all
	// letters together: the newest letters keep theirs first.
	ValueBudget = 4 << 20
)

// Header is one record header; its value is shown as text.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Letter is one dead letter: where it is in the DLQ topic, when it was written,
// why (the x-* headers) and its headers. Value is the original message: it
// carries personal data and is only answered to requests with the API token,
// and only its first MaxValueBytes (none once a read's ValueBudget is spent).
// The original headers may carry personal data too: requests without the
// token get only the x-* headers (the service's own).
type Letter struct {
	Partition       int32     `json:"partition"`
	Offset          int64     `json:"offset"`
	Time            time.Time `json:"time"`
	Key             string    `json:"key"`
	Error           string    `json:"error"`
	Class           string    `json:"class"`
	Stage           string    `json:"stage"`
	SourceTopic     string    `json:"source_topic"`
	SourcePartition *int32    `json:"source_partition"`
	SourceOffset    *int64    `json:"source_offset"`
	Attempts        int       `json:"attempts"`
	Headers         []Header  `json:"headers"`
	ValueBytes      int       `json:"value_bytes"`
	// ValueCut says that Value is only part of the value (its first
	// MaxValueBytes, or nothing once the read's ValueBudget was spent).
	ValueCut bool   `json:"value_cut"`
	Value    []byte `json:"-"`
}

// DLQRead is what a DLQReader returns: letters (in any order) and Total, the
// size of the whole topic (see kafkaedge.TopicRead.Size).
type DLQRead struct {
	Letters []Letter
	Total   int64
}

// DLQReader reads the newest n letters of the DLQ topic (all partitions
// together; collecting them with a Newest of n bounds its memory). It must
// return when ctx ends, with an error that wraps context.DeadlineExceeded when
// it ran out of time.
type DLQReader func(ctx context.Context, n int) (DLQRead, error)

// Member is one member of the consumer group.
// MemberID and Host (the member's address, a pod IP) are answered only to
// requests with the API token.
type Member struct {
	ClientID   string             `json:"client_id"`
	InstanceID string             `json:"instance_id"`
	MemberID   string             `json:"member_id,omitempty"`
	Host       string             `json:"host,omitempty"`
	Partitions map[string][]int32 `json:"partitions"`
	// Lag is the group's lag on the member's partitions (end offsets less
	// committed offsets); null when no partition has a committed offset.
	Lag *int64 `json:"lag"`
	// Self marks the member that is this process (known when it is a static
	// member: its instance id is Options.InstanceID).
	Self bool `json:"self"`
}

// Group is the consumer group as its coordinator describes it.
type Group struct {
	ID          string   `json:"group_id"`
	State       string   `json:"state"`
	Assignor    string   `json:"assignor"`
	Coordinator int      `json:"coordinator"`
	Members     []Member `json:"members"`
}

// GroupReader describes the consumer group. It must return when ctx ends.
type GroupReader func(ctx context.Context) (Group, error)

// Options configures Register. Every field is optional.
type Options struct {
	// DLQ reads the dead-letter topic DLQTopic; nil: GET /api/v1/dlq answers 503.
	DLQ      DLQReader
	DLQTopic string
	// Group describes the consumer group; nil: GET /api/v1/pipeline/group answers 503.
	Group GroupReader
	// InstanceID is this process's group.instance.id ("" for a dynamic member).
	InstanceID string
	// Trusted reports whether a request carries the API token: only then are
	// the letters' values and original headers and the members' ids and hosts
	// answered. Nil: never.
	Trusted func(c *fiber.Ctx) bool
	// Timeout bounds one answer, waiting for the read in flight included
	// (default DefaultTimeout); TTL is how long an answer is reused, and then
	// dropped (default DefaultTTL).
	Timeout, TTL time.Duration
}

// Register adds the views to r:
//
//	GET /api/v1/dlq?limit=N         the newest N (1..200, default 50) dead letters, newest first
//	GET /api/v1/pipeline/group      the consumer group's members and their partitions
func Register(r fiber.Router, o Options) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	h := &handlers{
		o:     o,
		dlq:   newMemo[DLQRead](o.TTL),
		group: newMemo[Group](o.TTL),
	}
	r.Get("/api/v1/dlq", h.getDLQ)
	r.Get("/api/v1/pipeline/group", h.getGroup)
}

type handlers struct {
	o     Options
	dlq   *memo[DLQRead]
	group *memo[Group]
}

// Answers of the views.
var (
	errInvalidLimit = fiber.NewError(fiber.StatusBadRequest,
		"invalid limit: want an integer from 1 to "+strconv.Itoa(MaxDLQLimit))
	errNoDLQ   = fiber.NewError(fiber.StatusServiceUnavailable, "no dead-letter topic is configured")
	errNoGroup = fiber.NewError(fiber.StatusServiceUnavailable, "no consumer group is configured")
)

// unavailable is the 503 of a read that failed or ran out of time; the
// error's text (broker addresses, topic names) only for trusted requests.
func (h *handlers) unavailable(c *fiber.Ctx, what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fiber.NewError(fiber.StatusServiceUnavailable,
			what+" could not be read within "+h.o.Timeout.String()+": the broker is slow or unreachable, try again later")
	}
	msg := what + " could not be read, try again later"
	if h.trusted(c) {
		msg += ": " + err.Error()
	}
	return fiber.NewError(fiber.StatusServiceUnavailable, msg)
}

func (h *handlers) trusted(c *fiber.Ctx) bool { return h.o.Trusted != nil && h.o.Trusted(c) }

// dlqBody is the answer of GET /api/v1/dlq.
type dlqBody struct {
	Topic string `json:"topic"`
	// Total is the size of the topic (high less low watermarks, summed).
	Total int64 `json:"total"`
	// ByClass counts the letters answered by x-error-class.
	ByClass map[string]int `json:"by_class"`
	Letters []letterJSON   `json:"letters"`
	// Values says whether the letters carry their values (token holders only).
	Values bool `json:"values"`
}

// letterJSON is a Letter with its value as text, for token holders only.
type letterJSON struct {
	Letter
	Value *string `json:"value,omitempty"`
}

func (h *handlers) getDLQ(c *fiber.Ctx) error {
	limit := DefaultDLQLimit
	if vs := c.Context().QueryArgs().PeekMulti("limit"); len(vs) > 0 {
		n, err := strconv.Atoi(string(vs[0]))
		if len(vs) > 1 || err != nil || n < 1 || n > MaxDLQLimit {
			return errInvalidLimit
		}
		limit = n
	}
	if h.o.DLQ == nil {
		return errNoDLQ
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), h.o.Timeout)
	defer cancel()
	// One read of the newest MaxDLQLimit serves every limit.
	read, err := h.dlq.get(ctx, func(ctx context.Context) (DLQRead, error) { return h.o.DLQ(ctx, MaxDLQLimit) })
	if err != nil {
		return h.unavailable(c, "the dead-letter topic", err)
	}
	letters := newest(read.Letters, limit)
	values := h.trusted(c)
	body := dlqBody{
		Topic: h.o.DLQTopic, Total: read.Total, ByClass: map[string]int{},
		Letters: make([]letterJSON, len(letters)), Values: values,
	}
	for i, l := range letters {
		body.ByClass[l.Class]++
		body.Letters[i].Letter = l
		body.Letters[i].Headers = []Header{}
		for _, hd := range l.Headers {
			if values || strings.HasPrefix(hd.Key, "x-") {
				body.Letters[i].Headers = append(body.Letters[i].Headers, hd)
			}
		}
		if values {
			v := string(l.Value)
			body.Letters[i].Value = &v
		}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(body)
}

// newest returns the limit newest letters, newest first: by time, then by
// partition and offset (a later offset of a partition is newer). The cached
// slice is not modified.
func newest(ls []Letter, limit int) []Letter {
	out := slices.Clone(ls)
	slices.SortFunc(out, func(a, b Letter) int { return newer(b, a) })
	return out[:min(limit, len(out))]
}

func (h *handlers) getGroup(c *fiber.Ctx) error {
	if h.o.Group == nil {
		return errNoGroup
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), h.o.Timeout)
	defer cancel()
	g, err := h.group.get(ctx, h.o.Group)
	if err != nil {
		return h.unavailable(c, "the consumer group", err)
	}
	trusted := h.trusted(c)
	members := make([]Member, len(g.Members))
	for i, m := range g.Members {
		m.Self = h.o.InstanceID != "" && m.InstanceID == h.o.InstanceID
		if !trusted {
			m.MemberID, m.Host = "", ""
		}
		if m.Partitions == nil {
			m.Partitions = map[string][]int32{}
		}
		members[i] = m
	}
	g.Members = members
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(g)
}

// memo runs one read at a time and reuses its answer for ttl, then drops it:
// a page polling it, or many pages, cost one Kafka read per ttl, and no answer
// is held longer than ttl.
type memo[V any] struct {
	ttl  time.Duration
	slot chan struct{} // the read in flight

	mu   sync.Mutex
	have bool
	val  V
	at   time.Time
	gen  uint64 // counts the answers stored; the drop timer clears only its own
}

func newMemo[V any](ttl time.Duration) *memo[V] {
	return &memo[V]{ttl: ttl, slot: make(chan struct{}, 1)}
}

// get returns the last answer if it is younger than ttl, else read's, after
// the read in flight (if any) ends. It gives up when ctx ends.
func (m *memo[V]) get(ctx context.Context, read func(context.Context) (V, error)) (V, error) {
	if v, ok := m.fresh(); ok {
		return v, nil
	}
	select {
	case m.slot <- struct{}{}:
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
	defer func() { <-m.slot }()
	if v, ok := m.fresh(); ok { // read by the request we waited for
		return v, nil
	}
	v, err := read(ctx)
	if err != nil {
		return v, err
	}
	m.mu.Lock()
	m.gen++
	gen := m.gen
	m.have, m.val, m.at = true, v, time.Now()
	m.mu.Unlock()
	time.AfterFunc(m.ttl, func() { m.drop(gen) })
	return v, nil
}

// drop forgets answer gen, unless a newer one replaced it.
func (m *memo[V]) drop(gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen == gen {
		var zero V
		m.have, m.val = false, zero
	}
}

// held reports whether the memo holds an answer.
func (m *memo[V]) held() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.have
}

func (m *memo[V]) fresh() (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.have && time.Since(m.at) < m.ttl {
		return m.val, true
	}
	var zero V
	return zero, false
}

// Newest collects the n newest letters of a read (by time, then partition
// and offset, as the answer orders them) from letters added in any order,
// holding no more than n at a time. It keeps at most MaxValueBytes of each
// value and budget bytes of values in all: past the budget, the oldest
// letters held lose theirs (ValueCut). Not safe for concurrent use.
type Newest struct {
	n, budget  int
	valueBytes int
	h          oldestFirst
}

// NewNewest returns a Newest of n letters and budget bytes of values.
func NewNewest(n, budget int) *Newest { return &Newest{n: n, budget: budget} }

// Add offers l with its value (l.Value and l.ValueBytes are set from value;
// value is copied only if kept, so it may be reused after Add returns).
func (k *Newest) Add(l Letter, value []byte) {
	if k.n <= 0 {
		return
	}
	if len(k.h) == k.n && newer(l, k.h[0]) <= 0 { // not newer than the oldest held
		return
	}
	l.ValueBytes = len(value)
	l.Value = slices.Clone(value[:min(len(value), MaxValueBytes)])
	l.ValueCut = len(value) > MaxValueBytes
	heap.Push(&k.h, l)
	k.valueBytes += len(l.Value)
	if len(k.h) > k.n {
		k.valueBytes -= len(heap.Pop(&k.h).(Letter).Value)
	}
	for k.valueBytes > k.budget {
		oldest := -1
		for i := range k.h {
			if len(k.h[i].Value) > 0 && (oldest < 0 || newer(k.h[i], k.h[oldest]) < 0) {
				oldest = i
			}
		}
		k.valueBytes -= len(k.h[oldest].Value)
		k.h[oldest].Value, k.h[oldest].ValueCut = nil, true
	}
}

// Letters returns the letters held, newest first.
func (k *Newest) Letters() []Letter { return newest(k.h, len(k.h)) }

// newer compares a and b: > 0 when a is newer, < 0 when older.
func newer(a, b Letter) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	if a.Partition != b.Partition { // the answer lists the lower partition first
		return int(b.Partition) - int(a.Partition)
	}
	switch {
	case a.Offset > b.Offset:
		return 1
	case a.Offset < b.Offset:
		return -1
	}
	return 0
}

// oldestFirst is a heap of letters whose root is the oldest.
type oldestFirst []Letter

func (h oldestFirst) Len() int           { return len(h) }
func (h oldestFirst) Less(i, j int) bool { return newer(h[i], h[j]) < 0 }
func (h oldestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oldestFirst) Push(x any)        { *h = append(*h, x.(Letter)) }
func (h *oldestFirst) Pop() any {
	old := *h
	l := old[len(old)-1]
	*h = old[:len(old)-1]
	return l
}
