package testenv

import (
	"context"
	"testing"
	"time"
)

func TestStandbyStreamsAndPauses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary := NewCluster(t, ClusterOptions{})
	standby := primary.NewStandby(t)
	if standby.Port() == primary.Port() {
		t.Fatalf("standby on the primary's port %d", primary.Port())
	}
	dsn := primary.CreateDB(t)
	w := connect(t, dsn)
	if _, err := w.Exec(ctx, "CREATE TABLE marks (id int); INSERT INTO marks VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := standby.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	r := connect(t, standby.DSNOf(dsn))
	count := func() int {
		t.Helper()
		var n int
		if err := r.QueryRow(ctx, "SELECT count(*) FROM marks").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("standby sees %d rows, want 1", n)
	}
	if _, err := r.Exec(ctx, "INSERT INTO marks VALUES (9)"); err == nil {
		t.Fatal("the standby accepted a write")
	}

	if err := standby.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "INSERT INTO marks VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := standby.WaitCaughtUp(wctx)
	wcancel()
	if err == nil {
		t.Fatal("a paused standby caught up")
	}
	if n := count(); n != 1 {
		t.Fatalf("paused standby sees %d rows, want still 1", n)
	}

	if err := standby.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("resumed standby sees %d rows, want 2", n)
	}

	// Stop and Start like any cluster; it streams again afterwards.
	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "INSERT INTO marks VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if err := standby.Start(); err != nil {
		t.Fatal(err)
	}
	if err := standby.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	r = connect(t, standby.DSNOf(dsn))
	if n := count(); n != 3 {
		t.Fatalf("restarted standby sees %d rows, want 3", n)
	}
}
