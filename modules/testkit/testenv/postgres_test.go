package testenv

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestPostgresDSNGivesFreshIsolatedDatabases(t *testing.T) {
	ctx := context.Background()
	var name1 string
	t.Run("first", func(t *testing.T) {
		conn := connect(t, PostgresDSN(t))
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name1); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE marker (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second", func(t *testing.T) {
		conn := connect(t, PostgresDSN(t))
		var name2 string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name2); err != nil {
			t.Fatal(err)
		}
		if name2 == name1 {
			t.Fatalf("two tests got the same database %q", name1)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("fresh database sees a table of another test")
		}
		// The first test's database was dropped by its cleanup.
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("database %q of a finished test was not dropped", name1)
		}
	})
}

func TestPostgresDSNDropsDatabaseWithOpenSessions(t *testing.T) {
	ctx := context.Background()
	var name string
	parent := t
	t.Run("leaves a session open", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		// Closed only by the parent: still open when this subtest's cleanup drops
		// the database, which WITH (FORCE) must cope with.
		parent.Cleanup(func() { _ = conn.Close(ctx) })
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	conn := connect(t, PostgresDSN(t))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %q with an open session was not dropped", name)
	}
}

func TestClusterKillAndRestartKeepsCommittedData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dedicated durable cluster")
	}
	ctx := context.Background()
	c := NewCluster(t, ClusterOptions{Durable: true, Settings: map[string]string{"max_connections": "20"}})
	dsn := c.CreateDB(t)

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var maxConn, fsync string
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_connections'), current_setting('fsync')").Scan(&maxConn, &fsync); err != nil {
		t.Fatal(err)
	}
	if maxConn != "20" || fsync != "on" {
		t.Fatalf("settings: max_connections=%s fsync=%s, want 20 and on", maxConn, fsync)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}

	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Fatal("Running after Kill")
	}
	// The old session is dead: its next statement fails with a connection error.
	_, err = conn.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if err == nil || (errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "57P")) {
		t.Fatalf("statement on a killed server: err = %v, want a connection error", err)
	}
	_ = conn.Close(ctx)

	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	conn2 := connect(t, dsn)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("after crash recovery: %d rows, want 3", n)
	}
	_ = conn2.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.DSN("x"), ":"+strconv.Itoa(c.Port())+"/") {
		t.Fatalf("DSN %q does not use port %d", c.DSN("x"), c.Port())
	}
	conn3 := connect(t, dsn)
	if err := conn3.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after clean restart: n=%d err=%v", n, err)
	}
}

func TestDatabaseName(t *testing.T) {
	tests := []string{
		"TestX",
		"TestStore/UpsertBatch/same_batch_again applies nothing",
		strings.Repeat("Very_Long-Name/", 20),
	}
	seen := map[string]bool{}
	for _, in := range tests {
		got := databaseName(in)
		if len(got) > 63 {
			t.Errorf("databaseName(%q) = %q: longer than 63 bytes", in, got)
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
				t.Errorf("databaseName(%q) = %q: character %q", in, got, r)
			}
		}
		if seen[got] {
			t.Errorf("databaseName(%q) = %q: duplicate", in, got)
		}
		seen[got] = true
	}
	if a, b := databaseName("TestX"), databaseName("TestX"); a == b {
		t.Error("two calls for the same test gave the same name")
	}
}
