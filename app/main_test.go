package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConfigErrorsExitTwoWithOneLine(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"serve"}, nil, "ORDERS_POSTGRES_DSN"},
		{[]string{"serve"}, []string{"ORDERS_POSTGRES_DSN=postgres://u@h:1/db", "ORDERS_CACHE_MAX_BYTES=lots"}, "ORDERS_CACHE_MAX_BYTES"},
		{[]string{"migrate", "status"}, []string{"ORDERS_KAFKA_BROKERS=nope"}, "ORDERS_KAFKA_BROKERS"},
		{
			[]string{"serve"},
			[]string{"ORDERS_POSTGRES_DSN=postgres://u@h:1/db", "ORDERS_KAFKA_PRODUCER_LINGER_MS=10000"},
			"config: kafka.producer.linger.ms (ORDERS_KAFKA_PRODUCER_LINGER_MS): `message.timeout.ms` must be greater than `linger.ms`",
		},
		{[]string{"serve", "--config", "/no/such/file.yaml"}, nil, "--config"},
		{[]string{"frobnicate"}, nil, "unknown subcommand"},
		{[]string{"migrate", "sideways"}, []string{"ORDERS_POSTGRES_DSN=postgres://u@h:1/db"}, "unknown action"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, tc.env, &out, &errb)
			if code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, exitUsage, errb.String())
			}
			msg := strings.TrimSpace(errb.String())
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) {
				t.Fatalf("want one line naming %s, got:\n%s", tc.want, msg)
			}
		})
	}
}

func TestMigrateUpDownStatus(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	env := []string{"ORDERS_POSTGRES_DSN=" + dsn}
	for _, action := range []string{"up", "status", "down", "status", "up"} {
		var out, errb bytes.Buffer
		if code := run([]string{"migrate", action}, env, &out, &errb); code != 0 {
			t.Fatalf("migrate %s: exit %d: %s", action, code, errb.String())
		}
		if out.Len() == 0 {
			t.Fatalf("migrate %s printed no status", action)
		}
	}
}
