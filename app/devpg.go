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
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

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
	if bin := localPGBin(); bin != "" {
		return startLocalPG(bin, filepath.Join(root, "postgres"), log)
	}
	if os.Geteuid() == 0 {
		return nil, errors.New("dev: no PostgreSQL server binaries found and the embedded PostgreSQL refuses to run as root; " +
			"install them (apt-get install postgresql), set ORDERS_POSTGRES_DSN, or use Docker Compose (docker compose up)")
	}
	log.Info("dev_postgres_embedded", "note", "no local PostgreSQL binaries: fetching a real PostgreSQL once (cached under .data/)")
	port := uint32(freePort())
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

// localPGBin finds the directory of the local PostgreSQL server binaries, or "".
func localPGBin() string {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(resolved), "initdb")); err == nil {
				return filepath.Dir(resolved)
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func startLocalPG(bin, dir string, log *slog.Logger) (*devPostgres, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(abs, "data")
	asPG := os.Geteuid() == 0
	pgRun := func(args ...string) ([]byte, error) {
		var cmd *exec.Cmd
		if asPG {
			cmd = exec.Command("su", "postgres", "-s", "/bin/sh", "-c", shellJoin(args))
		} else {
			cmd = exec.Command(args[0], args[1:]...)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.Bytes(), err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if asPG {
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, errors.New("dev: running as root needs the postgres user to run PostgreSQL; run as a normal user or set ORDERS_POSTGRES_DSN")
		}
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
		if out, err := pgRun(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"); err != nil {
			return nil, fmt.Errorf("dev: initdb: %w\n%s", err, out)
		}
	}
	if port, ok := runningPGPort(data); ok {
		log.Info("dev_postgres_reused", "port", port)
		return &devPostgres{dsn: localDSN(port), stop: func() error { return nil }}, nil
	}
	port := freePort()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, abs)
	if out, err := pgRun(filepath.Join(bin, "pg_ctl"), "-D", data, "-w", "-t", "60", "-l", filepath.Join(abs, "postgres.log"), "-o", opts, "start"); err != nil {
		return nil, fmt.Errorf("dev: pg_ctl start: %w\n%s", err, out)
	}
	dsn := localDSN(port)
	if err := createDB(dsn); err != nil {
		return nil, err
	}
	return &devPostgres{dsn: dsn, stop: func() error {
		out, err := pgRun(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
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

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 54329
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
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
