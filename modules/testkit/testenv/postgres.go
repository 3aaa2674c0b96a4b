// Package testenv provides real backing services for tests: throwaway PostgreSQL
// clusters and databases (this file) and a Kafka broker (kafka.go).
//
// Packages that use it call Main from TestMain so that every server the test
// binary started is stopped when the tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orders-service/modules/pgserver"
)

// EnvDatabaseURL names the environment variable that points tests at an existing
// PostgreSQL server instead of a throwaway cluster. Its user must be allowed to
// CREATE DATABASE; the database in the URL is used only to connect.
const EnvDatabaseURL = "TEST_DATABASE_URL"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
)

// howToProvide ends every "no PostgreSQL" failure so the reader knows the fix.
const howToProvide = "install PostgreSQL (e.g. apt-get install postgresql: initdb, postgres and pg_ctl under " +
	"/usr/lib/postgresql/*/bin, or on PATH) or set " + EnvDatabaseURL +
	"=postgres://user:pass@host:5432/postgres?sslmode=disable to a server whose user may CREATE DATABASE"

// PostgresDSN returns the DSN of a fresh, empty database created for this test and
// dropped (WITH (FORCE)) in t.Cleanup. The server is the one in TEST_DATABASE_URL
// when that is set; otherwise one throwaway cluster shared by the whole test binary,
// started on first use with durability relaxed for speed and stopped by Main.
// It fails the test with instructions when no server can be provided.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			t.Fatalf("testenv: %s must be a postgres:// URL, got %q", EnvDatabaseURL, raw)
		}
		return createDatabase(t, raw, func(db string) string { return withDatabase(u, db) }, nil)
	}
	shared.once.Do(func() {
		shared.cluster, shared.err = startCluster(ClusterOptions{})
	})
	if shared.err != nil {
		t.Fatalf("testenv: no PostgreSQL for tests: %v\n%s", shared.err, howToProvide)
	}
	return shared.cluster.CreateDB(t)
}

var shared struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

// Main runs the tests of m, then stops every PostgreSQL cluster this test binary
// started, deletes their data directories, and exits with the tests' exit code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	registry.shutdown()
	os.Exit(code)
}

// registry tracks what must be torn down when the test binary ends.
var registry = &shutdownRegistry{clusters: map[*Cluster]struct{}{}}

type shutdownRegistry struct {
	mu       sync.Mutex
	clusters map[*Cluster]struct{}
}

func (r *shutdownRegistry) add(c *Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clusters[c] = struct{}{}
}

func (r *shutdownRegistry) remove(c *Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clusters, c)
}

func (r *shutdownRegistry) shutdown() {
	r.mu.Lock()
	clusters := make([]*Cluster, 0, len(r.clusters))
	for c := range r.clusters {
		clusters = append(clusters, c)
	}
	r.mu.Unlock()
	for _, c := range clusters {
		if err := c.destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
	}
}

// ClusterOptions configures a dedicated cluster.
type ClusterOptions struct {
	// Durable keeps PostgreSQL's default durability (fsync, full_page_writes).
	// Benchmarks need it; without it the cluster skips fsync for speed but still
	// keeps every acknowledged commit across a Kill of the server process.
	Durable bool
	// Settings are extra server settings passed as -c name=value (e.g.
	// "max_connections": "20"); they override the defaults chosen here.
	Settings map[string]string
}

// Cluster is a throwaway PostgreSQL cluster owned by the test binary: its own
// data directory, listening on 127.0.0.1 on a free port, user "postgres" with
// trust authentication. Its methods are safe for concurrent use.
type Cluster struct {
	bin     string // directory holding initdb and postgres
	dir     string // temp dir: data dir, unix socket, server log
	dataDir string
	logPath string
	port    int
	opts    ClusterOptions
	cred    *syscall.Credential // non-nil when the server must run as another user
	primary *Cluster            // the cluster this one is a standby of (NewStandby); nil for a primary

	mu   sync.Mutex
	proc *pgProcess // nil while stopped
}

// pgProcess is one run of the postmaster. done is closed once it has exited.
type pgProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// NewCluster starts a dedicated cluster for fault tests and benchmarks and stops
// and deletes it in t.Cleanup. Unlike PostgresDSN it never uses TEST_DATABASE_URL:
// the caller may crash and restart it. It fails the test when PostgreSQL binaries
// are not installed.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c, err := startCluster(opts)
	if err != nil {
		t.Fatalf("testenv: new cluster: %v\n%s", err, howToProvide)
	}
	t.Cleanup(func() {
		if err := c.destroy(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return c
}

// DSN returns a URL that connects to database db of the cluster as the superuser
// "postgres", without TLS.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(db))
}

// Port returns the TCP port the cluster listens on (the same across restarts).
func (c *Cluster) Port() int { return c.port }

// CreateDB creates a fresh empty database and returns its DSN; the database is
// dropped in t.Cleanup if the cluster is running then. The cluster must be running
// and not a standby (create on the primary; see DSNOf).
func (c *Cluster) CreateDB(t testing.TB) string {
	t.Helper()
	if c.primary != nil {
		t.Fatalf("testenv: CreateDB on a standby: create the database on the primary and use DSNOf")
	}
	return createDatabase(t, c.DSN("postgres"), c.DSN, c.Running)
}

// WarmWAL makes the cluster write mb MiB of WAL and checkpoint, so that the
// WAL segments it will need next already exist. A new cluster has none ahead of
// its write position: every 16 MiB of WAL, the backend that crosses into the
// next segment creates the file, fills it with zeros and syncs it before its
// statement goes on (wait events WALInitWrite, WALInitSync), which took about
// 300 ms here, where a cluster that has run a while renames a segment it no
// longer needs (a checkpoint recycles them). Benchmarks of latency call it so
// that they measure a server in its steady state, whatever each side writes.
func (c *Cluster) WarmWAL(tb testing.TB, mb int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// One logical-decoding message per MiB: WAL, and nothing else.
	sql := fmt.Sprintf(`SELECT count(pg_logical_emit_message(false, 'testenv-warm', repeat('x', 1048576))) FROM generate_series(1, %d);
CHECKPOINT`, mb)
	if err := adminExec(ctx, c.DSN("postgres"), sql); err != nil {
		tb.Fatalf("testenv: warm the WAL: %v", err)
	}
}

// Running reports whether the server process is up (it may still be starting or
// recovering right after Start returns an error).
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil && !c.proc.exited()
}

// Kill crashes the server the way `pg_ctl -m immediate stop` does (SIGQUIT: no
// checkpoint, recovery on the next start) and waits until it is gone. Killing a
// stopped cluster does nothing.
func (c *Cluster) Kill() error {
	if err := c.signalAndWait(syscall.SIGQUIT); err != nil {
		return fmt.Errorf("kill cluster: %w", err)
	}
	return nil
}

// Stop shuts the server down cleanly (fast shutdown: active sessions are
// disconnected, a checkpoint is written) and waits until it is gone. Stopping a
// stopped cluster does nothing.
func (c *Cluster) Stop() error {
	if err := c.signalAndWait(syscall.SIGINT); err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	return nil
}

// Start starts a stopped or killed server again on the same port and data
// directory and waits until it accepts connections (after crash recovery, if
// any). Starting a running cluster does nothing.
func (c *Cluster) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil && !c.proc.exited() {
		return nil
	}
	if err := c.startLocked(); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	return nil
}

func (c *Cluster) signalAndWait(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.proc
	if p == nil {
		return nil
	}
	c.proc = nil
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal postmaster: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	// A shutdown that hangs: crash it, then make sure it is gone.
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return fmt.Errorf("postmaster did not exit on %v within %v", sig, stopTimeout)
}

// destroy stops the server and deletes its directory.
func (c *Cluster) destroy() error {
	registry.remove(c)
	var errs []error
	if err := c.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
	}
	return errors.Join(errs...)
}

func (p *pgProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startCluster creates a data directory with initdb and starts a server on it.
func startCluster(opts ClusterOptions) (*Cluster, error) {
	bin, err := pgserver.FindBin()
	if err != nil {
		return nil, err
	}
	cred, err := pgserver.Credential()
	if err != nil {
		return nil, err
	}
	c, err := newClusterDir(bin, cred, opts)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(c.dir)
		}
	}()
	initdb := pgserver.Command(bin, cred, "initdb",
		"-D", c.dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Env = serverEnv()
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	// A free port can be taken by someone else before the server binds it: retry.
	for attempt := 0; ; attempt++ {
		if c.port, err = pgserver.FreePort(); err != nil {
			return nil, err
		}
		if err = c.startLocked(); err == nil {
			break
		}
		if attempt == 2 {
			return nil, err
		}
	}
	registry.add(c)
	ok = true
	return c, nil
}

const (
	dirPrefix = "testenv-pg-"
	ownerFile = "owner.pid" // pid of the test binary that owns a cluster directory
)

var sweepOnce sync.Once

// sweepStaleDirs deletes cluster directories left by test binaries that died
// without running Main (their servers died with them: see startLocked).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// startLocked starts the postmaster on c.port and waits until it accepts
// connections. The process gets SIGQUIT (immediate shutdown) if the test binary
// dies without stopping it, so a crashed or killed test run leaks no server.
func (c *Cluster) startLocked() error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close() // the child keeps its own copy of the descriptor

	cmd := pgserver.Command(c.bin, c.cred, "postgres", c.serverArgs()...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = serverEnv()
	cmd.SysProcAttr.Setpgid = true // a Ctrl-C on the terminal is for the test binary, not the server
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	p := &pgProcess{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits, not the
		// process: keep this goroutine on its thread until the child is gone. The
		// thread is never unlocked, so it ends with the goroutine, after the child.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.done)
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	if err := c.waitReady(p); err != nil {
		if !p.exited() {
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-p.done
		}
		return fmt.Errorf("%w\nserver log tail:\n%s", err, tail(c.logPath, 2048))
	}
	c.proc = p
	return nil
}

func (c *Cluster) serverArgs() []string {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": c.dir,
		"max_connections":         "200",
	}
	if !c.opts.Durable {
		// No fsync: a committed transaction is in the kernel's page cache, which
		// survives a crash of the server process (Kill), though not of the machine.
		// synchronous_commit stays on: with it off, a killed server loses commits.
		settings["fsync"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", c.dataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// waitReady polls until a connection succeeds, the process exits or the start
// timeout passes.
func (c *Cluster) waitReady(p *pgProcess) error {
	deadline := time.Now().Add(startTimeout)
	dsn := c.DSN("postgres")
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if p.exited() {
			if p.err == nil {
				return errors.New("postgres exited during start")
			}
			return fmt.Errorf("postgres exited during start: %w", p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %w", startTimeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// createDatabase creates a uniquely named database through adminDSN and returns
// dsnFor(name). The database is dropped in t.Cleanup unless alive reports false.
func createDatabase(t testing.TB, adminDSN string, dsnFor func(db string) string, alive func() bool) string {
	t.Helper()
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := adminExec(ctx, adminDSN, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if alive != nil && !alive() {
			return // the cluster is down; it is deleted with its data directory
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := adminExec(ctx, adminDSN, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return dsnFor(name)
}

func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}

// databaseName makes a unique, readable, lower-case name of at most 63 bytes:
// "t_" + the sanitized test name (truncated) + "_" + 12 random hex digits.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return "t_" + b.String() + "_" + hex.EncodeToString(rnd[:])
}

// withDatabase returns u with its path replaced by db.
func withDatabase(u *url.URL, db string) string {
	v := *u
	v.Path = "/" + db
	v.RawPath = ""
	return v.String()
}

// serverEnv is a minimal environment for initdb and postgres: no PG* variables of
// the caller leak into the server, and the C locale keeps it deterministic.
func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C", "TZ=UTC"}
}

// tail returns up to n bytes from the end of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return string(buf)
}
