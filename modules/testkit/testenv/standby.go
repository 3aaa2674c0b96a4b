package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orders-service/modules/pgserver"
)

// NewStandby makes a streaming hot standby of c: a base backup of the running
// primary c (pg_basebackup -R -X stream, which writes standby.signal and
// primary_conninfo) on a free port, started and accepting read-only connections.
// It is stopped and deleted in t.Cleanup. The standby is a Cluster: Stop, Start,
// Kill, DSN and Port work as on the primary; CreateDB does not (it is read-only):
// databases created on the primary appear on it (see DSNOf and WaitCaughtUp).
func (c *Cluster) NewStandby(t testing.TB) *Cluster {
	t.Helper()
	s, err := c.startStandby()
	if err != nil {
		t.Fatalf("testenv: new standby: %v", err)
	}
	t.Cleanup(func() {
		if err := s.destroy(); err != nil {
			t.Errorf("testenv: standby: %v", err)
		}
	})
	return s
}

// DSNOf returns the DSN of the database that dsn (a DSN of another cluster, e.g.
// of CreateDB on the primary) names, on c: same database, c's port.
func (c *Cluster) DSNOf(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return c.DSN("postgres")
	}
	return c.DSN(strings.TrimPrefix(u.Path, "/"))
}

// PauseReplay stops the standby from applying WAL (pg_wal_replay_pause) and waits
// until it has paused: from then on it still receives WAL but shows nothing the
// primary writes until ResumeReplay. It fails on a cluster that is not a standby.
func (c *Cluster) PauseReplay(ctx context.Context) error {
	if err := c.exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		return fmt.Errorf("pause replay: %w", err)
	}
	return c.poll(ctx, "SELECT pg_get_wal_replay_pause_state() = 'paused'")
}

// ResumeReplay lets a paused standby apply WAL again (pg_wal_replay_resume).
func (c *Cluster) ResumeReplay(ctx context.Context) error {
	if err := c.exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		return fmt.Errorf("resume replay: %w", err)
	}
	return nil
}

// WaitCaughtUp waits until the standby has replayed everything its primary had
// written when it was called (pg_current_wal_lsn of the primary), or ctx ends: a
// paused standby never catches up.
func (c *Cluster) WaitCaughtUp(ctx context.Context) error {
	if c.primary == nil {
		return errors.New("wait caught up: not a standby")
	}
	lsn, err := c.primary.CurrentLSN(ctx)
	if err != nil {
		return fmt.Errorf("wait caught up: %w", err)
	}
	return c.poll(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn, false)")
}

// CurrentLSN returns the cluster's current write position (pg_current_wal_lsn, in
// PostgreSQL's "X/Y" text form). It fails on a standby.
func (c *Cluster) CurrentLSN(ctx context.Context) (string, error) {
	var lsn string
	err := c.query(ctx, "SELECT pg_current_wal_lsn()::text", &lsn)
	if err != nil {
		return "", fmt.Errorf("current lsn: %w", err)
	}
	return lsn, nil
}

// startStandby takes a base backup of the running primary c into a new directory
// and starts a server on it.
func (c *Cluster) startStandby() (*Cluster, error) {
	if c.primary != nil {
		return nil, errors.New("cascading standbys are not supported: call NewStandby on the primary")
	}
	if !c.Running() {
		return nil, errors.New("the primary is not running")
	}
	s, err := newClusterDir(c.bin, c.cred, c.opts)
	if err != nil {
		return nil, err
	}
	s.primary = c
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(s.dir)
		}
	}()
	// The primary's pg_hba.conf (initdb -A trust) lets 127.0.0.1 connect for
	// replication, and PostgreSQL 15's defaults (wal_level=replica,
	// max_wal_senders=10) allow a streaming standby.
	backup := pgserver.Command(c.bin, c.cred, "pg_basebackup",
		"-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "-U", "postgres",
		"-D", s.dataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.Env = serverEnv()
	if out, err := backup.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pg_basebackup: %w: %s", err, bytes.TrimSpace(out))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if s.port, err = pgserver.FreePort(); err != nil {
			return nil, err
		}
		if err = s.startLocked(); err == nil {
			break
		}
		if attempt == 2 {
			return nil, err
		}
	}
	registry.add(s)
	ok = true
	return s, nil
}

// exec runs sql on the cluster's postgres database.
func (c *Cluster) exec(ctx context.Context, sql string) error {
	return adminExec(ctx, c.DSN("postgres"), sql)
}

// query runs sql on the cluster's postgres database and scans its one row into dest.
func (c *Cluster) query(ctx context.Context, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// poll runs the boolean query sql every 20 ms until it answers true or ctx ends.
func (c *Cluster) poll(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	for {
		var done bool
		if err := conn.QueryRow(ctx, sql).Scan(&done); err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: still false: %w", sql, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// newClusterDir makes the directory of a new cluster (owned by the server's user),
// with no data directory yet.
func newClusterDir(bin string, cred *syscall.Credential, opts ClusterOptions) (*Cluster, error) {
	sweepOnce.Do(sweepStaleDirs)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("write owner: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	return &Cluster{
		bin:     bin,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "server.log"),
		opts:    opts,
		cred:    cred,
	}, nil
}
