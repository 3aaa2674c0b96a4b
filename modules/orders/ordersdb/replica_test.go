package ordersdb_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestParseLSN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ordersdb.LSN
	}{
		{"0/0", 0},
		{"0/1", 1},
		{"16/B374D848", 0x16_B374D848},
		{"1/0", 1 << 32},
		{"ffffffff/ffffffff", math.MaxUint64},
	} {
		got, err := ordersdb.ParseLSN(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v", tc.in, uint64(got), err, uint64(tc.want))
			continue
		}
		back, err := ordersdb.ParseLSN(got.String())
		if err != nil || back != got {
			t.Errorf("ParseLSN(%q.String() = %q) = %v, %v", tc.in, got.String(), back, err)
		}
	}
	if s := ordersdb.LSN(0x16_B374D848).String(); s != "16/B374D848" {
		t.Errorf("String = %q, want 16/B374D848", s)
	}
	for _, bad := range []string{"", "0", "/0", "0/", "0/0/0", "g/0", "-1/0", "+1/0", "1 /0", "100000000/0", "0/100000000"} {
		if l, err := ordersdb.ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) = %v, want an error", bad, l)
		}
	}
	lo, _ := ordersdb.ParseLSN("0/FFFFFFFF")
	hi, _ := ordersdb.ParseLSN("1/0")
	if !(lo < hi) || hi-lo != 1 {
		t.Errorf("0/FFFFFFFF and 1/0: want adjacent and ordered, got %d, %d", lo, hi)
	}
}

func TestSetReadFloorNeverLowers(t *testing.T) {
	s := ordersdb.New(nil)
	s.SetReadFloor(100)
	s.SetReadFloor(50)
	if f := s.ReadFloor(); f != 100 {
		t.Fatalf("floor %v after 100 then 50, want 100", f)
	}
	s.SetReadFloor(101)
	if f := s.ReadFloor(); f != 101 {
		t.Fatalf("floor %v, want 101", f)
	}
}

// replicaSetup is a database on a primary with a streaming standby, a pool on the
// standby's copy of it, and the pieces of a store.
type replicaSetup struct {
	primary, standby *testenv.Cluster
	db               *dbtest.DB
	read             *bun.DB
}

func newReplicaSetup(t *testing.T, primary, standby *testenv.Cluster) *replicaSetup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := dbtest.New(t, dbtest.On(primary))
	if err := standby.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	read, err := ordersdb.Open(ctx, standby.DSNOf(d.DSN), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = read.Close() })
	return &replicaSetup{primary: primary, standby: standby, db: d, read: read}
}

// store returns a store reading from the standby, closed in t.Cleanup, once its
// prober has seen the standby up.
func (r *replicaSetup) store(t *testing.T) *ordersdb.Store {
	t.Helper()
	s := ordersdb.NewWithReplica(r.db.Bun, r.read, ordersdb.ReplicaOptions{Backoff: 300 * time.Millisecond})
	t.Cleanup(s.Close)
	eventually(t, "replica up", func() bool { return s.ReplicaStats().Up })
	return s
}

// primaryLSN returns the primary's current WAL position.
func (r *replicaSetup) primaryLSN(t *testing.T) ordersdb.LSN {
	t.Helper()
	raw, err := r.primary.CurrentLSN(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ordersdb.ParseLSN(raw)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustGet(t *testing.T, s *ordersdb.Store, uid string) orders.Version {
	t.Helper()
	_, v, err := s.Get(context.Background(), uid)
	if err != nil {
		t.Fatalf("get %s: %v", uid, err)
	}
	return v
}

func mustListFirst(t *testing.T, s *ordersdb.Store) orders.Version {
	t.Helper()
	page, err := s.List(context.Background(), 10, "")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(page.Versions) == 0 {
		t.Fatal("list: empty page")
	}
	return page.Versions[0]
}

func TestReadReplica(t *testing.T) {
	primary := testenv.NewCluster(t, testenv.ClusterOptions{})
	standby := primary.NewStandby(t)
	ctx := context.Background()

	t.Run("reads go to the replica when it is caught up", func(t *testing.T) {
		r := newReplicaSetup(t, primary, standby)
		s := r.store(t)
		o := storetest.NewOrder("replica-a", 1)
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: at(1)}}); err != nil {
			t.Fatal(err)
		}
		floor := r.primaryLSN(t)
		// ParseLSN agrees with PostgreSQL on the number behind the text.
		var bytes uint64
		if err := r.db.Bun.QueryRowContext(ctx, "SELECT (?::pg_lsn - '0/0'::pg_lsn)::bigint", floor.String()).Scan(&bytes); err != nil || bytes != uint64(floor) {
			t.Fatalf("PostgreSQL reads %s as %d (%v), ParseLSN as %d", floor, bytes, err, uint64(floor))
		}
		s.SetReadFloor(floor)
		eventually(t, "prober sees the replica past the floor", func() bool {
			st := s.ReplicaStats()
			return st.Up && st.Replayed >= floor && st.LagBytes == 0
		})
		if v := mustGet(t, s, o.OrderUID); v != at(1) {
			t.Fatalf("get: version %v, want %v", v, at(1))
		}
		if _, _, err := s.Get(ctx, "replica-unknown"); !errors.Is(err, orders.ErrNotFound) {
			t.Fatalf("get unknown: %v, want ErrNotFound", err)
		}
		if v := mustListFirst(t, s); v != at(1) {
			t.Fatalf("list: version %v, want %v", v, at(1))
		}
		st := s.ReplicaStats()
		if st.Reads != 3 || st.BehindFloor != 0 || st.Errors != 0 {
			t.Fatalf("stats %+v: want 3 replica reads, nothing else", st)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.Collector())
		if got := gathered(t, reg, "orders_db_replica_reads_total", "replica"); got != 3 {
			t.Errorf("orders_db_replica_reads_total{outcome=replica} = %v, want 3", got)
		}
		if got := gathered(t, reg, "orders_db_replica_up", ""); got != 1 {
			t.Errorf("orders_db_replica_up = %v, want 1", got)
		}
		if got := gathered(t, reg, "orders_db_replica_lag_bytes", ""); got != 0 {
			t.Errorf("orders_db_replica_lag_bytes = %v, want 0", got)
		}
	})

	t.Run("a replica behind the floor is not read", func(t *testing.T) {
		r := newReplicaSetup(t, primary, standby)
		s := r.store(t)
		o := storetest.NewOrder("replica-b", 1)
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: at(1)}}); err != nil {
			t.Fatal(err)
		}
		if err := standby.WaitCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		if err := standby.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = standby.ResumeReplay(context.Background()) })
		newer := storetest.NewOrder("replica-b", 2)
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: newer, Version: at(2)}}); err != nil {
			t.Fatal(err)
		}
		floor := r.primaryLSN(t)
		s.SetReadFloor(floor)
		eventually(t, "prober sees the lag", func() bool { return s.ReplicaStats().LagBytes > 0 })

		if v := mustGet(t, s, o.OrderUID); v != at(2) {
			t.Fatalf("get behind the floor: version %v, want the primary's %v", v, at(2))
		}
		if v := mustListFirst(t, s); v != at(2) {
			t.Fatalf("list behind the floor: version %v, want the primary's %v", v, at(2))
		}
		if st := s.ReplicaStats(); st.Reads != 0 || st.BehindFloor != 2 || st.Errors != 0 || !st.Up {
			t.Fatalf("stats %+v: want 2 reads behind the floor, none on the replica, still up", st)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.Collector())
		if got := gathered(t, reg, "orders_db_replica_reads_total", "behind_floor"); got != 2 {
			t.Errorf("orders_db_replica_reads_total{outcome=behind_floor} = %v, want 2", got)
		}
		if got := gathered(t, reg, "orders_db_replica_lag_bytes", ""); got <= 0 {
			t.Errorf("orders_db_replica_lag_bytes = %v, want > 0", got)
		}

		// Floor 0: the replica's older version is acceptable.
		s0 := r.store(t)
		if v := mustGet(t, s0, o.OrderUID); v != at(1) {
			t.Fatalf("get with floor 0: version %v, want the replica's %v", v, at(1))
		}
		if v := mustListFirst(t, s0); v != at(1) {
			t.Fatalf("list with floor 0: version %v, want the replica's %v", v, at(1))
		}
		if st := s0.ReplicaStats(); st.Reads != 2 || st.BehindFloor != 0 {
			t.Fatalf("floor 0 stats %+v: want 2 replica reads", st)
		}

		// Replay resumes: the replica is read again and shows the newer version.
		if err := standby.ResumeReplay(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "replica caught up", func() bool { return s.ReplicaStats().LagBytes == 0 })
		if v := mustGet(t, s, o.OrderUID); v != at(2) {
			t.Fatalf("get after resume: version %v, want %v", v, at(2))
		}
		if v := mustListFirst(t, s); v != at(2) {
			t.Fatalf("list after resume: version %v, want %v", v, at(2))
		}
		if st := s.ReplicaStats(); st.Reads != 2 || st.BehindFloor != 2 {
			t.Fatalf("stats after resume %+v: want 2 replica reads", st)
		}
	})

	// The floor is checked before the replica's read takes its snapshot: a read
	// racing the replay that crosses the floor gets the floor's version or a newer
	// one, never the older one the replica showed a moment before.
	t.Run("a read racing the replay never shows less than the floor", func(t *testing.T) {
		r := newReplicaSetup(t, primary, standby)
		s := r.store(t)
		t.Cleanup(func() { _ = standby.ResumeReplay(context.Background()) })
		uid := "replica-race"
		rounds := testkit.EnvInt(t, "REPLICA_RACE_ROUNDS", 40, 5)
		for k := 1; k <= rounds; k++ {
			if err := standby.WaitCaughtUp(ctx); err != nil {
				t.Fatal(err)
			}
			if err := standby.PauseReplay(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: storetest.NewOrder(uid, k), Version: at(int64(k))}}); err != nil {
				t.Fatal(err)
			}
			s.SetReadFloor(r.primaryLSN(t))
			var (
				wg    sync.WaitGroup
				stale atomic.Pointer[orders.Version]
				seen  atomic.Int64 // reads answered at the floor's version by the replica
				stop  atomic.Bool
			)
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						_, v, err := s.Get(ctx, uid)
						if err != nil && !errors.Is(err, orders.ErrNotFound) {
							t.Errorf("get: %v", err)
							return
						}
						if v.Compare(at(int64(k))) < 0 {
							stale.Store(&v)
							return
						}
					}
				}()
			}
			time.Sleep(5 * time.Millisecond)
			if err := standby.ResumeReplay(ctx); err != nil {
				t.Fatal(err)
			}
			before := s.ReplicaStats().Reads
			deadline := time.Now().Add(10 * time.Second)
			for s.ReplicaStats().Reads < before+50 && stale.Load() == nil && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			seen.Store(int64(s.ReplicaStats().Reads - before))
			stop.Store(true)
			wg.Wait()
			if v := stale.Load(); v != nil {
				t.Fatalf("round %d: a read answered %v below the floor's version %v", k, *v, at(int64(k)))
			}
			if seen.Load() == 0 {
				t.Fatalf("round %d: the replica answered no read once caught up", k)
			}
		}
	})

	t.Run("a stopped replica falls back to the primary and comes back", func(t *testing.T) {
		r := newReplicaSetup(t, primary, standby)
		s := r.store(t)
		o := storetest.NewOrder("replica-c", 1)
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: at(1)}}); err != nil {
			t.Fatal(err)
		}
		if err := standby.WaitCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		mustGet(t, s, o.OrderUID) // a pooled connection to the standby
		if err := standby.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = standby.Start() })
		t0 := time.Now()
		for range 20 {
			if v := mustGet(t, s, o.OrderUID); v != at(1) {
				t.Fatalf("get with the replica stopped: %v", v)
			}
			if v := mustListFirst(t, s); v != at(1) {
				t.Fatalf("list with the replica stopped: %v", v)
			}
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("40 reads with the replica stopped took %v: each pays for the dead replica", d)
		}
		eventually(t, "replica down", func() bool { return !s.ReplicaStats().Up })
		down := s.ReplicaStats()
		if down.Reads != 1 {
			t.Errorf("stats %+v: a stopped replica answered", down)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.Collector())
		if got := gathered(t, reg, "orders_db_replica_up", ""); got != 0 {
			t.Errorf("orders_db_replica_up = %v, want 0", got)
		}

		if err := standby.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "replica back", func() bool { return s.ReplicaStats().Up })
		eventually(t, "reads on the replica again", func() bool {
			mustGet(t, s, o.OrderUID)
			mustListFirst(t, s)
			return s.ReplicaStats().Reads >= down.Reads+2
		})
	})
}

// gathered returns the value of the series of family name (with outcome label
// value outcome, if not empty) in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if outcome != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != outcome) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s %s", name, outcome)
	return 0
}
