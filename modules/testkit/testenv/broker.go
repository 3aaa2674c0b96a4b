package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/pgserver"
)

// kafkaScriptTimeout bounds one `kafka.sh up` or `kafka.sh down`.
const kafkaScriptTimeout = 3 * time.Minute

// KafkaBroker is a dedicated single-node Kafka broker that a test may stop and
// start again: configs/kafka/kafka.sh run on free ports with its own state
// directory, never the shared broker of TEST_KAFKA_BROKERS.
type KafkaBroker struct {
	script string
	dir    string
	addr   string
	env    []string
}

// KafkaBrokerAvailable returns "" when a dedicated broker can be started here
// (java on PATH, and mvn on PATH or the broker jars already fetched into the
// repository's .cache/kafka/libs), otherwise the reason it cannot.
func KafkaBrokerAvailable() string {
	if _, err := exec.LookPath("java"); err != nil {
		return "java not found on PATH (a dedicated Kafka broker needs a JDK 17+)"
	}
	if _, err := exec.LookPath("mvn"); err == nil {
		return ""
	}
	if root, err := ModuleRoot(); err == nil {
		if _, err := os.Stat(filepath.Join(root, ".cache", "kafka", "libs", ".complete")); err == nil {
			return ""
		}
	}
	return "mvn not found on PATH and no Kafka jars in .cache/kafka/libs (apt-get install -y maven)"
}

// StartKafkaBroker starts a dedicated broker on free ports in a temporary state
// directory (reusing the repository's fetched jars when present) and waits until
// it serves metadata. t.Cleanup stops it and deletes its directory. It fails the
// test when the broker does not come up; callers check KafkaBrokerAvailable first.
func StartKafkaBroker(t testing.TB) *KafkaBroker {
	t.Helper()
	return StartKafkaBrokerBehind(t, nil)
}

// StartKafkaBrokerBehind is StartKafkaBroker for a broker that clients reach
// through a TCP proxy: proxy is called with the broker's own address and
// returns the proxy's (host:port on 127.0.0.1), which the broker advertises, so
// that every client, after the bootstrap, talks to it through the proxy. Nil:
// no proxy.
func StartKafkaBrokerBehind(t testing.TB, proxy func(upstream string) string) *KafkaBroker {
	t.Helper()
	return startKafkaBroker(t, proxy, nil)
}

func startKafkaBroker(t testing.TB, proxy func(upstream string) string, extraEnv []string) *KafkaBroker {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("testenv: kafka broker: %v", err)
	}
	dir, err := os.MkdirTemp("", "testenv-kafka-")
	if err != nil {
		t.Fatalf("testenv: kafka broker: %v", err)
	}
	shared := filepath.Join(root, ".cache", "kafka", "libs")
	if _, err := os.Stat(filepath.Join(shared, ".complete")); err == nil {
		if err := os.Symlink(shared, filepath.Join(dir, "libs")); err != nil {
			t.Fatalf("testenv: kafka broker: link jars: %v", err)
		}
	}
	port, err := pgserver.FreePort()
	if err != nil {
		t.Fatalf("testenv: kafka broker: %v", err)
	}
	ctrl, err := pgserver.FreePort()
	for err == nil && ctrl == port {
		ctrl, err = pgserver.FreePort()
	}
	if err != nil {
		t.Fatalf("testenv: kafka broker: %v", err)
	}
	b := &KafkaBroker{
		script: filepath.Join(root, "configs", "kafka", "kafka.sh"),
		dir:    dir,
		addr:   "127.0.0.1:" + strconv.Itoa(port),
		env: []string{
			"KAFKA_PORT=" + strconv.Itoa(port),
			"KAFKA_CONTROLLER_PORT=" + strconv.Itoa(ctrl),
			"KAFKA_DIR=" + dir,
		},
	}
	b.env = append(b.env, extraEnv...)
	if proxy != nil {
		front := proxy(b.addr)
		_, p, err := net.SplitHostPort(front)
		if err != nil {
			t.Fatalf("testenv: kafka broker: proxy address %q: %v", front, err)
		}
		b.env = append(b.env, "KAFKA_ADVERTISED_PORT="+p)
		b.addr = front
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	if err := b.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return b
}

// StartKafkaBrokerWithSASL is StartKafkaBroker with a second listener,
// SASL_PLAINTEXT with the PLAIN mechanism, for users ("name:password"). It
// returns the broker (Addr: the PLAINTEXT listener) and the SASL listener's
// address.
func StartKafkaBrokerWithSASL(t testing.TB, users ...string) (*KafkaBroker, string) {
	t.Helper()
	sasl, err := pgserver.FreePort()
	if err != nil {
		t.Fatalf("testenv: kafka broker: %v", err)
	}
	b := startKafkaBroker(t, nil, []string{"KAFKA_SASL_PORT=" + strconv.Itoa(sasl), "KAFKA_SASL_USERS=" + strings.Join(users, " ")})
	return b, "127.0.0.1:" + strconv.Itoa(sasl)
}

// Addr returns the broker's bootstrap address (127.0.0.1:PORT, the same across restarts).
func (b *KafkaBroker) Addr() string { return b.addr }

// Start starts the stopped broker again on the same ports and data and waits until
// it serves metadata. Starting a running broker does nothing.
func (b *KafkaBroker) Start() error {
	if _, err := b.run("up"); err != nil {
		return fmt.Errorf("kafka broker start: %w", err)
	}
	return nil
}

// Stop shuts the broker down cleanly (SIGTERM, SIGKILL after 30 s) and waits until
// it is gone. Stopping a stopped broker does nothing.
func (b *KafkaBroker) Stop() error {
	if _, err := b.run("down"); err != nil {
		return fmt.Errorf("kafka broker stop: %w", err)
	}
	return nil
}

func (b *KafkaBroker) run(verb string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kafkaScriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", b.script, verb)
	cmd.Env = append(os.Environ(), b.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafka.sh %s: %w: %s", verb, err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
