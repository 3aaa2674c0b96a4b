// Command app is the order service: one binary, several subcommands.
//
//	app [serve]                 migrations, HTTP API and the ingestion pipeline (default)
//	app migrate up|down|status  database schema
//	app produce [flags]         test traffic to the input topic
//	app dev                     everything on one machine, nothing to configure
//	app dlq inspect|replay      look at dead letters; re-publish them after a fix
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// exitUsage is the exit code for configuration and usage errors.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// usageError is a command-line or configuration error: printed as one line, exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signalContext()
	defer stop()
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, args, environ, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args, environ, stdout, stderr)
	case "produce":
		err = cmdProduce(ctx, args, environ, stdout, stderr)
	case "dev":
		err = cmdDev(ctx, args, environ, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args, environ, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = usageError{fmt.Errorf("unknown subcommand %q (want serve, migrate, produce, dev or dlq)", cmd)}
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	var ce *configs.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		fmt.Fprintln(stderr, "error:", err)
		return exitUsage
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

const usage = `usage: app [subcommand] [flags]

subcommands:
  serve                  run migrations, the HTTP API and the ingestion pipeline (default)
  migrate up|down|status manage the database schema
  produce                send test orders to the input topic (--count, --rate, --invalid-ratio, --seed)
  dev                    run everything locally: own PostgreSQL, in-process Kafka, test traffic
  dlq inspect|replay     count dead letters by class, show some; re-publish selected ones (--dry-run first)

Every subcommand accepts --config FILE; ORDERS_* environment variables override it.
`

// signalContext is cancelled on the first SIGINT/SIGTERM; a second one exits at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			slog.Info("shutdown_requested", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		s := <-ch
		slog.Error("forced_exit", "signal", s.String())
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// loadConfig parses the common --config flag plus the subcommand's own flags
// (registered by addFlags) and loads the configuration.
func loadConfig(name string, args, environ []string, stderr io.Writer, addFlags func(*flag.FlagSet)) (configs.Config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (ORDERS_* environment variables override it)")
	if addFlags != nil {
		addFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return configs.Config{}, nil, err
		}
		return configs.Config{}, nil, usageError{err}
	}
	cfg, err := configs.Load(*path, environ)
	if err == nil {
		kafkaedge.UseSecurity(cfg.Kafka) // every Kafka client of this process
		// every consumer and producer: kafka.consumer.*, kafka.producer.* (Load checked them)
		if perr := kafkaedge.UseProperties(cfg.Kafka); perr != nil {
			err = usageError{fmt.Errorf("config: %w", perr)}
		}
	}
	return cfg, fs.Args(), err
}

// newLogger builds the process logger: JSON in production, text in dev.
func newLogger(cfg configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by configs
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(traceHandler{h})
}
