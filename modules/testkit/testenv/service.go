package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serviceReadyTimeout bounds the wait for a started service to answer /ready 200.
const serviceReadyTimeout = 90 * time.Second

const binDirPrefix = "testenv-bin-"

type serviceBuildOnce struct {
	once sync.Once
	path string
	err  error
}

var serviceBuilds sync.Map // build tags -> *serviceBuildOnce

// BuildService compiles the service binary (package ./app of this module) once per
// test binary and returns its path. The binary lives in a temporary directory that
// a later test binary deletes once this one has exited. It fails the test when the
// module root cannot be found or the build fails.
func BuildService(t testing.TB) string {
	t.Helper()
	return BuildServiceTags(t, "")
}

// BuildServiceTags is BuildService with build tags (comma-separated), e.g.
// "faultinject" for the crash points of pipeline/kafkasrc; one build per tag set.
func BuildServiceTags(t testing.TB, tags string) string {
	t.Helper()
	v, _ := serviceBuilds.LoadOrStore(tags, &serviceBuildOnce{})
	b := v.(*serviceBuildOnce)
	b.once.Do(func() {
		b.path, b.err = buildService(tags)
	})
	if b.err != nil {
		t.Fatalf("testenv: build service (tags %q): %v", tags, b.err)
	}
	return b.path
}

func buildService(tags string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	sweepBinDirs()
	dir, err := os.MkdirTemp("", binDirPrefix)
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", fmt.Errorf("write owner: %w", err)
	}
	bin := filepath.Join(dir, "orders")
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "./app")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./app: %w: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// sweepBinDirs deletes binary directories of test binaries that have exited.
func sweepBinDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
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

// ModuleRoot returns the directory holding this module's go.mod, searched upwards
// from the working directory (a test runs in its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/orderflow/orders-service\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: go.mod of github.com/orderflow/orders-service not found above the working directory")
		}
		dir = parent
	}
}

// ServiceOptions says how to run the service binary.
type ServiceOptions struct {
	// Binary is the executable (BuildService's result).
	Binary string
	// Args are the command-line arguments (default: "serve").
	Args []string
	// Env are extra environment variables (NAME=value), typically ORDERS_*. When no
	// ORDERS_HTTP_ADDR is given the service listens on 127.0.0.1 on a port the
	// kernel picks, read back from its service_started log line.
	Env []string
	// LogPath receives the process's stdout and stderr, appended (default: a file
	// in t.TempDir()).
	LogPath string
}

// Service is one run of the service binary as a child process. The child gets
// SIGKILL if the test binary dies, so a crashed test run leaks no service.
// Its methods are safe for concurrent use.
type Service struct {
	opts ServiceOptions
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, set before done is closed

	mu   sync.Mutex
	addr string
}

// StartService starts the binary and waits until GET /ready answers 200. The
// process is killed in t.Cleanup if it still runs then. It fails the test when
// the process cannot start, exits, or is not ready within 90 s (the log tail is
// in the message).
func StartService(t testing.TB, opts ServiceOptions) *Service {
	t.Helper()
	s := StartProcess(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), serviceReadyTimeout)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("testenv: start service: %v\nlog tail:\n%s", err, s.LogTail(4096))
	}
	return s
}

// StartProcess starts the binary like StartService but does not wait for it to
// be ready: for subcommands that are not servers (e.g. "produce"); wait on Done.
// The process is killed in t.Cleanup if it still runs then.
func StartProcess(t testing.TB, opts ServiceOptions) *Service {
	t.Helper()
	s, err := startService(t, opts)
	if err != nil {
		t.Fatalf("testenv: start %v: %v", opts.Args, err)
	}
	t.Cleanup(func() { _ = s.Kill() })
	return s
}

func startService(t testing.TB, opts ServiceOptions) (*Service, error) {
	if len(opts.Args) == 0 {
		opts.Args = []string{"serve"}
	}
	if opts.LogPath == "" {
		opts.LogPath = filepath.Join(t.TempDir(), "service.log")
	}
	env := os.Environ()
	hasAddr := false
	for _, kv := range opts.Env {
		if strings.HasPrefix(kv, "ORDERS_HTTP_ADDR=") {
			hasAddr = true
		}
	}
	if !hasAddr {
		env = append(env, "ORDERS_HTTP_ADDR=127.0.0.1:0")
	}
	env = append(env, opts.Env...)
	logFile, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	pr, pw := io.Pipe()
	cmd := exec.Command(opts.Binary, opts.Args...)
	cmd.Env = env
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s := &Service{opts: opts, cmd: cmd, done: make(chan struct{})}

	// The log pump copies output to the file and picks up the listen address.
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		defer logFile.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logFile.Write(append(line, '\n'))
			if bytes.Contains(line, []byte(`"service_started"`)) {
				var ev struct {
					Addr string `json:"http_addr"`
				}
				if json.Unmarshal(line, &ev) == nil && ev.Addr != "" {
					s.mu.Lock()
					s.addr = ev.Addr
					s.mu.Unlock()
				}
			}
		}
		_, _ = io.Copy(logFile, pr) // a line over the scanner's bound: keep the rest raw
	}()

	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the starting thread exits: keep it until the child is gone.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			_ = pw.Close()
			<-pumped
			close(s.done)
			return
		}
		started <- nil
		err := cmd.Wait()
		_ = pw.Close()
		<-pumped
		s.err = err
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Binary, err)
	}
	return s, nil
}

// Pid returns the process id.
func (s *Service) Pid() int { return s.cmd.Process.Pid }

// Addr returns the HTTP address (host:port) the service listens on, empty until
// it logged service_started.
func (s *Service) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr != "" {
		return s.addr
	}
	for _, kv := range s.opts.Env {
		if v, ok := strings.CutPrefix(kv, "ORDERS_HTTP_ADDR="); ok && !strings.HasPrefix(v, ":") {
			return v
		}
	}
	return ""
}

// URL returns "http://" + Addr() + path.
func (s *Service) URL(path string) string { return "http://" + s.Addr() + path }

// Exited reports whether the process has ended.
func (s *Service) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (s *Service) Done() <-chan struct{} { return s.done }

// Err returns how the process ended (nil for exit code 0; an *exec.ExitError
// otherwise), or nil while it runs.
func (s *Service) Err() error {
	if !s.Exited() {
		return nil
	}
	return s.err
}

// WaitReady polls GET /ready until it answers 200. It returns an error when the
// process exits first or ctx ends.
func (s *Service) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		if addr := s.Addr(); addr != "" {
			resp, err := client.Get(s.URL("/ready"))
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
			} else {
				last = err.Error()
			}
		}
		select {
		case <-s.done:
			if s.err == nil {
				return errors.New("service exited before ready (exit status 0)")
			}
			return fmt.Errorf("service exited before ready: %w", s.err)
		case <-ctx.Done():
			return fmt.Errorf("service not ready (last /ready: %s): %w", last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits until the process is gone. Killing an ended
// process does nothing.
func (s *Service) Kill() error {
	if s.Exited() {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill service: %w", err)
	}
	<-s.done
	return nil
}

// Terminate sends SIGTERM (the graceful stop) and waits up to timeout for the
// process to exit; it returns the process's exit error (nil for exit code 0).
// After the timeout the process is killed and an error is returned.
func (s *Service) Terminate(timeout time.Duration) error {
	if !s.Exited() {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("terminate service: %w", err)
		}
	}
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("terminate service: %w", s.err)
		}
		return nil
	case <-time.After(timeout):
		_ = s.Kill()
		return fmt.Errorf("terminate service: still running after %v, killed", timeout)
	}
}

// RSS returns the resident set size of the process in bytes (VmRSS of
// /proc/PID/status).
func (s *Service) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("rss: unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("rss: no VmRSS line (process gone?)")
}

// LogPath returns the file holding the process's output.
func (s *Service) LogPath() string { return s.opts.LogPath }

// LogTail returns up to n bytes from the end of the process's log.
func (s *Service) LogTail(n int64) string { return tail(s.opts.LogPath, n) }
