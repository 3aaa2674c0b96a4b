package ingest

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// combiner joins the small batches of several writer lanes into one
// transaction. With more than one writer the partitions are spread over lanes,
// each its own batch stage and connection, so that a backlog is written side by
// side. At a low rate that costs freshness: every lane writes its one or two
// orders in a transaction of its own, each a commit (a WAL flush) competing with
// the others for the same two cores, where one writer would have written them
// together (group commit). The combiner writes the lanes' batches smaller than
// big one transaction at a time: a lane's small batch that arrives while one is
// under way waits for it to end, and then goes with the other lanes' waiting
// small batches in the next (so a lone order is still written at once, and the
// lanes' batch stages accumulate while their writers wait, as one writer's
// would). A batch of big orders or more (a backlog) is written at once on its
// lane's connection, beside anything else under way: a lane draining a backlog
// never holds back the small batches of a quiet one, nor they it.
//
// Each lane has at most one batch in the combiner (its upsert stage waits for
// the outcome), and a partition has one lane, so a partition's batches are
// still written in order. A joint write is split back into the lanes' batches
// by uid: the lanes' uids are disjoint (an order's key is its uid, so all its
// versions are on one partition) except for an order re-keyed to another
// partition, whose outcome goes to both lanes.
type combiner struct {
	big int // batches of at least this many items are written alone and at once

	mu      sync.Mutex
	cond    *sync.Cond
	busy    bool          // a transaction of small batches is under way
	pending []*submission // small batches waiting for the next one
	joint   uint64        // transactions that wrote more than one lane's batch (and ended well)
}

// combineLanes turns the combiner on (tests and benchmarks compare without it).
var combineLanes = true

// combineBelow is the size from which a lane's batch is written alone: the
// largest batch the store writes in two round trips (ordersdb's small batches),
// past which a batch costs about what a COPY does and a backlog is building.
const combineBelow = 128

// submission is one lane's batch in the combiner.
type submission struct {
	b    *batch
	done bool
	err  error
}

func newCombiner(big int) *combiner {
	c := &combiner{big: max(big, 1)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// errJointAborted is the outcome of the batches of a joint write whose leading
// lane stopped without one (a panic under the write): the flow is failing.
var errJointAborted = errors.New("ingest: the joint write of this batch ended without an outcome")

// write stores b (one lane's batch, its items filtered) by calling write, alone
// or with the small batches of other lanes, and returns when b's outcome is
// known, or ctx's error when ctx ends while b waits for its turn. write must
// store the items it is given and fill the batch it is given with their records
// and what is stored (Ingest.writeAll).
func (c *combiner) write(ctx context.Context, b *batch, write func(context.Context, *batch) error) error {
	if len(b.items) >= c.big {
		// a backlog: side by side, as many as there are lanes
		return write(ctx, b)
	}
	// Waiting lanes wake when ctx ends, as well as when a write ends.
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	sub := &submission{b: b}
	c.pending = append(c.pending, sub)
	for !sub.done && c.busy {
		if err := ctx.Err(); err != nil && slices.Contains(c.pending, sub) {
			// not taken by a leader yet: leave (once taken, its outcome follows)
			c.pending = slices.DeleteFunc(c.pending, func(s *submission) bool { return s == sub })
			c.mu.Unlock()
			return err
		}
		c.cond.Wait()
	}
	if sub.done { // another lane wrote it
		c.mu.Unlock()
		return sub.err
	}
	// No transaction under way: lead one with every small batch waiting.
	subs := c.pending
	c.pending = nil
	c.busy = true
	c.mu.Unlock()

	result := errJointAborted
	defer func() { // also when write panics: the waiting lanes must not wait forever
		c.mu.Lock()
		for _, s := range subs {
			s.done, s.err = true, result
		}
		if result == nil && len(subs) > 1 {
			c.joint++
		}
		c.busy = false
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	if len(subs) == 1 {
		result = write(ctx, b)
		return result
	}
	all := &batch{}
	for _, s := range subs {
		all.items = append(all.items, s.b.items...)
	}
	err := write(ctx, all)
	if err == nil {
		split(all, subs)
	}
	result = err
	return err
}

// split hands the records and stored versions of a joint write to the batches
// of subs, by uid: to each batch that has an item of the uid. The lanes' uids
// are disjoint but for an order whose versions came on two partitions (re-keyed):
// then both lanes get its outcome (the joint write stored the newer version).
func split(all *batch, subs []*submission) {
	lanes := make(map[string][]*batch, len(all.items))
	for _, s := range subs {
		for _, it := range s.b.items {
			uid := it.order.OrderUID
			if bs := lanes[uid]; len(bs) == 0 || bs[len(bs)-1] != s.b {
				lanes[uid] = append(bs, s.b)
			}
		}
	}
	for i := range all.recs {
		for _, b := range lanes[all.recs[i].UID()] {
			b.recs = append(b.recs, all.recs[i])
		}
	}
	for i := range all.stored {
		for _, b := range lanes[all.stored[i].UID] {
			b.stored = append(b.stored, all.stored[i])
		}
	}
}

// joints reports how many transactions wrote more than one lane's batch.
func (c *combiner) joints() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joint
}

// jointWrites reports the combiner's joint transactions (0 with one writer).
func (in *Ingest) jointWrites() uint64 {
	if in.comb == nil {
		return 0
	}
	return in.comb.joints()
}
