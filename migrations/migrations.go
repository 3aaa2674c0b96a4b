// Package migrations holds the PostgreSQL schema as plain SQL files embedded in the
// binary and applies them with bun's migrator. Files are named
// <14-digit id>_<name>.tx.up.sql / .tx.down.sql; each runs in its own transaction.
//
// Up, Down and Status hold a PostgreSQL session advisory lock while they work, so
// several service instances starting at once apply each migration exactly once:
// the first takes the lock and migrates, the others wait and then find nothing to do.
package migrations

import (
	"context"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing/fstest"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var files embed.FS

// lockKey is the pg_advisory_lock key that serialises migrations of this schema
// ("ordersmg" in ASCII).
const lockKey int64 = 0x6f72646572736d67

// State is the state of one migration, as reported by Status.
type State struct {
	ID         string    // the numeric prefix of the file name, e.g. "20261125000001"
	Name       string    // the rest of the file name, e.g. "orders"
	Applied    bool      // whether the migration is applied
	GroupID    int64     // the group (one Up call) that applied it; 0 when not applied
	MigratedAt time.Time // when it was applied; zero when not applied
}

// String formats s as one line, e.g. "20261125000001_orders  applied (group 1, 2026-11-25T10:00:00Z)".
func (s State) String() string {
	if !s.Applied {
		return fmt.Sprintf("%s_%s  pending", s.ID, s.Name)
	}
	return fmt.Sprintf("%s_%s  applied (group %d, %s)", s.ID, s.Name, s.GroupID, s.MigratedAt.UTC().Format(time.RFC3339))
}

// Migrations returns the embedded migrations, discovered afresh on each call.
func Migrations() (*migrate.Migrations, error) {
	return discover(files)
}

// FilesWith returns the embedded migration files plus extra (file name →
// SQL), for UpFS: a migration of a test's own run through the service's
// migrator (e.g. an index built concurrently while the service ingests).
func FilesWith(extra map[string]string) (fs.FS, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return nil, err
	}
	out := make(fstest.MapFS, len(names)+len(extra))
	for _, name := range names {
		raw, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		out[name] = &fstest.MapFile{Data: raw}
	}
	for name, sql := range extra {
		out[name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return out, nil
}

// discover reads the migrations of fsys (SQL files named as those of this package).
func discover(fsys fs.FS) (*migrate.Migrations, error) {
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	return ms, nil
}

// Up applies every pending migration as one group. It returns nil when there was
// nothing to do.
func Up(ctx context.Context, db *bun.DB) error {
	return UpFS(ctx, db, files)
}

// UpFS is Up with the migrations of fsys instead of this package's: for tests
// of the migrator itself (e.g. a migration that builds an index concurrently on
// a large table while the service ingests). Files named *.tx.up.sql run in a
// transaction; others (CREATE INDEX CONCURRENTLY) statement by statement.
func UpFS(ctx context.Context, db *bun.DB, fsys fs.FS) error {
	ms, err := discover(fsys)
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	err = withMigrator(ctx, db, ms, func(m *migrate.Migrator) error {
		group, err := m.Migrate(ctx)
		if err != nil {
			return err
		}
		if !group.IsZero() {
			slog.InfoContext(ctx, "migrations_applied", "group", group.ID, "migrations", group.Migrations.String())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Down rolls back the last applied group (the migrations of the last Up call that
// applied something). It returns nil when nothing is applied.
func Down(ctx context.Context, db *bun.DB) error {
	ms, err := Migrations()
	if err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	err = withMigrator(ctx, db, ms, func(m *migrate.Migrator) error {
		group, err := m.Rollback(ctx)
		if err != nil {
			return err
		}
		if !group.IsZero() {
			slog.InfoContext(ctx, "migrations_rolled_back", "group", group.ID, "migrations", group.Migrations.String())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// Status returns every embedded migration in order with whether it is applied.
func Status(ctx context.Context, db *bun.DB) ([]State, error) {
	var out []State
	ms, err := Migrations()
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	err = withMigrator(ctx, db, ms, func(m *migrate.Migrator) error {
		ms, err := m.MigrationsWithStatus(ctx)
		if err != nil {
			return err
		}
		out = make([]State, 0, len(ms))
		for _, mg := range ms {
			out = append(out, State{
				ID:         mg.Name,
				Name:       mg.Comment,
				Applied:    mg.IsApplied(),
				GroupID:    mg.GroupID,
				MigratedAt: mg.MigratedAt,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	return out, nil
}

// FormatStatus renders statuses one per line, for the `migrate status` command.
func FormatStatus(statuses []State) string {
	var b strings.Builder
	for _, s := range statuses {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// withMigrator runs fn with a migrator whose bookkeeping tables exist, while
// holding the migration advisory lock on a dedicated connection.
// lockPoll is how often a migrator retries the advisory lock held by another.
const lockPoll = 250 * time.Millisecond

// lock takes the advisory lock on conn, retrying pg_try_advisory_lock every
// lockPoll (until ctx ends) rather than waiting inside pg_advisory_lock: a
// session waiting in a statement holds a snapshot, and CREATE INDEX
// CONCURRENTLY in the migration running elsewhere waits for every older
// snapshot to end, so the two would wait for each other forever (seen with two
// instances starting during such a migration).
func lock(ctx context.Context, conn bun.Conn) error {
	logged := false
	for {
		var ok bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(?)", lockKey).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		if !logged {
			slog.InfoContext(ctx, "migrations_waiting", "reason", "another instance is migrating")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

func withMigrator(ctx context.Context, db *bun.DB, ms *migrate.Migrations, fn func(*migrate.Migrator) error) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("lock connection: %w", err)
	}
	if err := lock(ctx, conn); err != nil {
		_ = conn.Close()
		return fmt.Errorf("advisory lock: %w", err)
	}
	defer func() {
		// Unlock even when ctx is done. If that fails, the session still holds the
		// lock: discard the connection instead of returning it to the pool.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, uerr := conn.ExecContext(uctx, "SELECT pg_advisory_unlock(?)", lockKey); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("advisory unlock: %w", uerr))
		}
		_ = conn.Close()
	}()

	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))
	// Init creates the bookkeeping tables; under the lock, so concurrent
	// CREATE TABLE IF NOT EXISTS calls cannot collide.
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return fn(m)
}
