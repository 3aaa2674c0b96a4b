package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/modules/pgserver"

	embeddedpostgres "github.com/fergusstrange/embedded-postgres"
)

// devPostgres is the PostgreSQL that `app dev` runs for itself, with its data under
// .data/ so orders survive restarts.
type devPostgres struct {
	dsn  string
	stop func() error
}

// startDevPostgres starts (or reuses) a PostgreSQL cluster under root: the local
// server binaries when installed (as the postgres user when running as root),
// otherwise a real PostgreSQL fetched once and cached by embedded-postgres.
func startDevPostgres(root string, log *slog.Logger) (*devPostgres, error) {
	if bin, err := pgserver.FindBin(); err == nil {
		return startLocalPG(bin, filepath.Join(root, "postgres"), log)
	}
	if os.Geteuid() == 0 {
		return nil, errors.New("dev: no PostgreSQL server binaries found and the embedded PostgreSQL refuses to run as root; " +
			"install them (apt-get install postgresql), set ORDERS_POSTGRES_DSN, or use Docker Compose (docker compose up)")
	}
	log.Info("dev_postgres_embedded", "note", "no local PostgreSQL binaries: fetching a real PostgreSQL once (cached under .data/)")
	p, err := pgserver.FreePort()
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	port := uint32(p)
	pg := embeddedpostgres.NewDatabase(embeddedpostgres.DefaultConfig().
		Version(embeddedpostgres.V15).Port(port).Database("orders").
		Username("postgres").Password("postgres").
		RuntimePath(filepath.Join(root, "embedded", "runtime")).
		CachePath(filepath.Join(root, "embedded", "cache")).
		DataPath(filepath.Join(root, "embedded", "data")).
		StartTimeout(60 * time.Second).Logger(nil))
	if err := pg.Start(); err != nil {
		return nil, fmt.Errorf("dev: embedded PostgreSQL: %w (set ORDERS_POSTGRES_DSN or use Docker Compose)", err)
	}
	return &devPostgres{dsn: fmt.Sprintf("postgres://postgres:postgres@127.0.0.1:%d/orders?sslmode=disable", port), stop: pg.Stop}, nil
}

func startLocalPG(bin, dir string, log *slog.Logger) (*devPostgres, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(abs, "data")
	cred, err := pgserver.Credential() // the postgres user when running as root
	if err != nil {
		return nil, fmt.Errorf("dev: %w; run as a normal user or set ORDERS_POSTGRES_DSN", err)
	}
	pgRun := func(program string, args ...string) ([]byte, error) {
		cmd := pgserver.Command(bin, cred, program, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.Bytes(), err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if cred != nil {
		// the postgres user must reach the data directory through every parent
		for d := abs; d != "/"; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, st.Mode().Perm()|0o001)
			}
		}
		if out, err := exec.Command("chown", "-R", "postgres", abs).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dev: chown %s: %w %s", abs, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		log.Info("dev_postgres_init", "dir", data)
		if out, err := pgRun("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"); err != nil {
			return nil, fmt.Errorf("dev: initdb: %w\n%s", err, out)
		}
	}
	if port, ok := runningPGPort(data); ok {
		log.Info("dev_postgres_reused", "port", port)
		return &devPostgres{dsn: localDSN(port), stop: func() error { return nil }}, nil
	}
	port, err := pgserver.FreePort()
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, abs)
	if out, err := pgRun("pg_ctl", "-D", data, "-w", "-t", "60", "-l", filepath.Join(abs, "postgres.log"), "-o", opts, "start"); err != nil {
		return nil, fmt.Errorf("dev: pg_ctl start: %w\n%s", err, out)
	}
	dsn := localDSN(port)
	if err := createDB(dsn); err != nil {
		return nil, err
	}
	return &devPostgres{dsn: dsn, stop: func() error {
		out, err := pgRun("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
		if err != nil {
			return fmt.Errorf("pg_ctl stop: %w %s", err, out)
		}
		return nil
	}}, nil
}

func localDSN(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orders?sslmode=disable", port)
}

// runningPGPort reads the port of a server already running on data, if any.
func runningPGPort(data string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return 0, false
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return 0, false
	}
	c.Close()
	return port, true
}

// createDB creates the database named in dsn when it does not exist yet.
func createDB(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin := *u
	admin.Path = "/postgres"
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(admin.String())))
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("dev: check database %s: %w", name, err)
	}
	if !exists {
		if _, err := db.ExecContext(ctx, "CREATE DATABASE "+pgIdent(name)); err != nil {
			return fmt.Errorf("dev: create database %s: %w", name, err)
		}
	}
	return nil
}

func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
