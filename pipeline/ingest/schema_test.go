package ingest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
)

// A schema change that refuses every order (here a new NOT NULL column the
// service does not write: not_null_violation, class 23, a "data" error) stops
// the flow: no order is dead-lettered and no offset is committed past them. Once
// the schema is fixed, a restarted flow stores them all.
func TestSchemaChangeStopsInsteadOfDeadLettering(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(51)
	first, _ := validRecords(g, 50)
	testenv.KafkaProduce(t, e.brokers, e.topic, first...)
	in, stop := e.start(t, nil)
	e.waitLagZero(t, in, time.Minute)

	ctx := context.Background()
	for _, q := range []string{
		`ALTER TABLE orders ADD COLUMN test_required text NOT NULL DEFAULT 'x'`,
		`ALTER TABLE orders ALTER COLUMN test_required DROP DEFAULT`,
	} {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	second, uids := validRecords(g, 50)
	testenv.KafkaProduce(t, e.brokers, e.topic, second...)
	deadline := time.Now().Add(time.Minute)
	for in.Ready() == nil || !errors.Is(in.Ready(), ingest.ErrSchemaRefusesOrders) {
		if time.Now().After(deadline) {
			t.Fatalf("the flow still runs a minute after the schema refused every order: %v", in.Ready())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); !errors.Is(err, ingest.ErrSchemaRefusesOrders) {
		t.Fatalf("Run returned %v, want ErrSchemaRefusesOrders", err)
	}
	if dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second); len(dl) != 0 {
		t.Fatalf("%d orders dead-lettered for a schema change", len(dl))
	}
	if lag := testenv.KafkaGroupLag(t, e.brokers, e.group, e.topic); lag != int64(len(second)) {
		t.Fatalf("group lag %d, want %d: offsets committed past orders that were not stored", lag, len(second))
	}

	if _, err := e.db.ExecContext(ctx, `ALTER TABLE orders DROP COLUMN test_required`); err != nil {
		t.Fatal(err)
	}
	in2, stop2 := e.start(t, nil)
	e.waitLagZero(t, in2, time.Minute)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		if !e.stored(t, uid) {
			t.Fatalf("order %s not stored after the schema was fixed", uid)
		}
	}
	if dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second); len(dl) != 0 {
		t.Fatalf("%d dead letters after the fix", len(dl))
	}
}

// A server that turns read-only (what a failover looks like to the old
// primary's clients: SQLSTATE 25006) is transient: the flow retries and goes
// on once writes are accepted again, instead of exiting.
func TestReadOnlyServerIsTransient(t *testing.T) {
	d := dbtest.New(t)
	e := newEnv(t, d)
	ctx := context.Background()
	var name string
	if err := e.db.QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	admin := d.OpenPool(t, 1)
	exec := func(q string) {
		t.Helper()
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Every new session of the database is read-only; the flow's sessions are
	// ended, so its pool reconnects to a "standby".
	exec("SET SESSION default_transaction_read_only = off")
	exec(`ALTER DATABASE "` + name + `" SET default_transaction_read_only = on`)
	in, stop := e.start(t, func(c *ingest.Config) { c.RetryMax = 500 * time.Millisecond })
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	g := ordersgen.New(52)
	recs, uids := validRecords(g, 30)
	testenv.KafkaProduce(t, e.brokers, e.topic, recs...)
	time.Sleep(3 * time.Second)
	if n := e.count(t); n != 0 {
		t.Fatalf("%d orders stored on a read-only server", n)
	}
	if err := in.Ready(); err != nil && strings.Contains(err.Error(), "failed") {
		t.Fatalf("the flow failed on a read-only server: %v", err)
	}
	exec(`ALTER DATABASE "` + name + `" RESET default_transaction_read_only`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	e.waitLagZero(t, in, time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		if !e.stored(t, uid) {
			t.Fatalf("order %s not stored after the server accepted writes again", uid)
		}
	}
}
