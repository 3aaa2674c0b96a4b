// Package pgserver finds and runs the local PostgreSQL server binaries. It is the
// one place that decides which installation a locally started cluster uses and how
// its programs run (as the "postgres" OS user when the caller is root, since
// PostgreSQL refuses to run as root): `app dev` (app/devpg.go) and the test
// clusters (modules/testkit/testenv) both start their servers through it.
//
// It imports nothing of the testing framework, so the service binary can use it.
package pgserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// ErrNotFound is returned by FindBin when no installation holds the server binaries.
var ErrNotFound = errors.New("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found")

// required are the programs a usable binary directory holds.
var required = []string{"initdb", "postgres", "pg_ctl"}

// FindBin returns the directory of the PostgreSQL server binaries, searched in one
// order: the directory of initdb on PATH (symbolic links resolved, so a link in
// /usr/local/bin leads to the installation it points to), then the newest
// /usr/lib/postgresql/<version>/bin (Debian and Ubuntu packages, which put no
// initdb on PATH). A directory counts only when it holds initdb, postgres and
// pg_ctl. It returns ErrNotFound when none does.
func FindBin() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(resolved))
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	candidates = append(candidates, dirs...)
	for _, d := range candidates {
		if hasAll(d) {
			return d, nil
		}
	}
	return "", ErrNotFound
}

func hasAll(dir string) bool {
	for _, name := range required {
		if !isExecutable(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

// versionOf returns the version in /usr/lib/postgresql/<version>/bin, 0 if none.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Credential returns the credential of the "postgres" OS user when running as root
// (PostgreSQL refuses to run as root), else nil (run as ourselves).
func Credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and PostgreSQL refuses root: need the OS user \"postgres\": %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// Command returns the command that runs program (initdb, postgres, pg_ctl...) of
// the installation in bin with args, as the user cred (nil: as ourselves; see
// Credential). The caller may add to cmd.SysProcAttr and set Env, Stdout, Stderr.
func Command(bin string, cred *syscall.Credential, program string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, program), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1 for a server to
// listen on. Someone else may take it before the server binds it: callers retry.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("free port: unexpected address %v", l.Addr())
	}
	return addr.Port, nil
}
