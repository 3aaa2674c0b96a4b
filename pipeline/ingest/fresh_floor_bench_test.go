package ingest_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// freshProducer sends the records of one BenchmarkFreshness run to its topic and
// keeps, per record, when the broker acknowledged it.
type freshProducer struct {
	brokers, topic string
	cl             *kgo.Client
	msgs           []*kgo.Record
	acks           []time.Time
	acked          atomic.Int64
	wg             sync.WaitGroup
	once           sync.Once
	err            error
	// pauses measured during steady: see pauseProbe
	pauses pauses
}

// warmPartition marks (in a record's Context) a warm-up record, which goes to
// the partition it names.
type warmPartition struct{}

// pauses are the delays of a goroutine that sleeps 1 ms at a time, beyond the
// 1 ms: what the machine gave the process late (a stop of the VM, CPU steal, a
// busy core). A delay of the whole process delays every order in flight, on the
// flow and on the floor alike, so a run with a long pause has that pause in its p99.
type pauses struct {
	longest time.Duration
	long    int // at least pauseLong
}

const pauseLong = 20 * time.Millisecond

func (p *pauses) add(o pauses) {
	p.longest = max(p.longest, o.longest)
	p.long += o.long
}

// pauseProbe measures pauses until the returned function is called, which
// returns them.
func pauseProbe() func() pauses {
	stop := make(chan struct{})
	done := make(chan pauses)
	go func() {
		var ps pauses
		for {
			select {
			case <-stop:
				done <- ps
				return
			default:
			}
			t := time.Now()
			time.Sleep(time.Millisecond)
			late := time.Since(t) - time.Millisecond
			ps.longest = max(ps.longest, late)
			if late >= pauseLong {
				ps.long++
			}
		}
	}()
	return func() pauses {
		close(stop)
		return <-done
	}
}

func newFreshProducer(b *testing.B, brokers, topic string, msgs []*kgo.Record) *freshProducer {
	b.Helper()
	// By key, as the service's producers do, except the warm-up records, which
	// go to the partition they name (warmPartition).
	byKey := kgo.StickyKeyPartitioner(nil)
	part := kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		tp := byKey.ForTopic(topic)
		return func(r *kgo.Record, n int) int {
			if r.Context != nil && r.Context.Value(warmPartition{}) != nil {
				return int(r.Partition)
			}
			return tp.Partition(r, n)
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(0), kgo.RecordPartitioner(part))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return &freshProducer{brokers: brokers, topic: topic, cl: cl, msgs: msgs, acks: make([]time.Time, len(msgs))}
}

func (p *freshProducer) send(i int) {
	p.wg.Add(1)
	p.cl.Produce(context.Background(), p.msgs[i], func(_ *kgo.Record, err error) {
		p.acks[i] = time.Now()
		p.acked.Add(1)
		if err != nil {
			p.once.Do(func() { p.err = err })
		}
		p.wg.Done()
	})
}

// warmUp produces the first freshPartitions records, the i-th to partition i,
// and waits until servable reports their uids (group joined, connections warm,
// and every partition fetched and written once: the first records of a
// partition nothing had fetched yet waited about a second in the floor's
// consumer) before the clock runs; state describes the consumer for the
// failure message.
func (p *freshProducer) warmUp(b *testing.B, servable func(uid string) bool, state func() string) {
	b.Helper()
	// Through the producer of the run, so that its connection, producer id and
	// per-partition state are warm too: a cold one held its first acknowledgements
	// for up to a second, then acknowledged them at once, a burst the runs measured.
	ctx := context.WithValue(context.Background(), warmPartition{}, true)
	for i := range freshPartitions {
		r := *p.msgs[i]
		r.Partition = int32(i)
		r.Context = ctx
		if err := p.cl.ProduceSync(ctx, &r).FirstErr(); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	for i := range freshPartitions {
		for deadline := time.Now().Add(2 * time.Minute); !servable(string(p.msgs[i].Key)); {
			if time.Now().After(deadline) {
				b.Fatalf("warm-up order %d not servable within 2 minutes; %s", i, state())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// steady produces the records after the warm-up ones at freshRate (every 5 ms, what the schedule
// owes), waits for every acknowledgement and returns the time from the first
// send to the last acknowledgement.
func (p *freshProducer) steady(b *testing.B) time.Duration {
	b.Helper()
	const tick = 5 * time.Millisecond
	probe := pauseProbe()
	defer func() { p.pauses = probe() }()
	t0 := time.Now()
	next := freshPartitions
	for next < len(p.msgs) {
		due := freshPartitions + int(time.Since(t0).Seconds()*freshRate)
		for ; next < len(p.msgs) && next < due; next++ {
			p.send(next)
		}
		time.Sleep(tick - time.Since(t0)%tick)
	}
	p.wg.Wait()
	if p.err != nil {
		b.Fatalf("produce: %v", p.err)
	}
	var last time.Time
	for _, a := range p.acks[freshPartitions:] {
		if a.After(last) {
			last = a
		}
	}
	return last.Sub(t0)
}

// runFreshFloor is the round trip BenchmarkFreshness measures the flow against:
// the least any consumer does before an order can be served from PostgreSQL
// with its default durability. One franz-go consumer (no group) reads the topic
// on one goroutine; what each poll returns is decoded and written with COPY into
// the minimal schema of the four tables (minimalSchemaSQL) in one transaction on
// one connection, and its orders count as servable when the COMMIT returns.
// While a commit runs, the next records gather in the client, so it batches as
// the flow's adaptive policy does, with nothing else on the path: no
// validation, no versions or stale guard, no change feed, cache or offset commit.
// Its latencies (lat only) come from the same producer and the same pacing as
// runFreshness.
func runFreshFloor(b *testing.B, cluster *testenv.Cluster, brokers string, msgs []*kgo.Record) freshResult {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := pgx.Connect(ctx, dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1)).DSN)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	first, err := decodeFloor(msgs[0])
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, minimalSchemaSQL([]orders.Record{first})); err != nil {
		b.Fatalf("minimal schema: %v", err)
	}

	topic := testenv.KafkaTopicName(b, "floor")
	testenv.KafkaCreateTopic(b, brokers, topic, freshPartitions)
	// No group: the partitions are named and read from their start.
	start := map[int32]kgo.Offset{}
	for p := range int32(freshPartitions) {
		start[p] = kgo.NewOffset().AtStart()
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()

	var mu sync.Mutex
	committed := make(map[string]time.Time, len(msgs))
	var failed error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := consumer.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			if err := fs.Err0(); err != nil {
				failed = err
				return
			}
			var recs []orders.Record
			fs.EachRecord(func(r *kgo.Record) {
				rec, err := decodeFloor(r)
				if err != nil && failed == nil {
					failed = err
				}
				recs = append(recs, rec)
			})
			if failed != nil {
				return
			}
			if len(recs) == 0 {
				continue
			}
			if err := copyOrders(ctx, conn, "minimal", recs); err != nil {
				if ctx.Err() == nil {
					failed = err
				}
				return
			}
			now := time.Now()
			mu.Lock()
			for i := range recs {
				committed[recs[i].UID()] = now
			}
			mu.Unlock()
		}
	}()
	servable := func(uid string) bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := committed[uid]
		return ok
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(committed)
	}
	stop := func() {
		cancel()
		<-done
		if failed != nil {
			b.Fatalf("floor consumer: %v", failed)
		}
	}

	p := newFreshProducer(b, brokers, topic, msgs)
	p.warmUp(b, servable, func() string { return "floor consumer" })
	produceTime := p.steady(b)
	for deadline := time.Now().Add(time.Minute); count() < len(msgs); {
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("floor: %d of %d orders committed a minute after the last acknowledgement", count(), len(msgs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	res := freshResult{produced: len(msgs) - freshPartitions, produceTime: produceTime, pauses: p.pauses}
	for i := freshPartitions; i < len(msgs); i++ {
		res.lat = append(res.lat, committed[string(msgs[i].Key)].Sub(p.acks[i]))
	}
	return res
}

// decodeFloor is the floor consumer's decode: the order of r with r's position
// as its version.
func decodeFloor(r *kgo.Record) (orders.Record, error) {
	var o orders.Order
	if err := json.Unmarshal(r.Value, &o); err != nil {
		return orders.Record{}, err
	}
	return orders.Record{Order: o, Version: orders.Version{Partition: r.Partition, Offset: r.Offset, Time: 1}}, nil
}
