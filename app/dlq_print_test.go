package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

func letterRecord(p int32, off int64, class, reason, key string) kafkaedge.Record {
	return kafkaedge.Record{
		Topic: "orders-dlq", Partition: p, Offset: off, Key: []byte(key), Value: []byte(`{"secret":"personal"}`),
		Timestamp: time.Date(2026, 12, 3, 12, 0, 0, int(off)*int(time.Millisecond), time.UTC),
		Headers: []kafkaedge.Header{
			{Key: kafkaedge.HeaderError, Value: []byte(reason)},
			{Key: kafkaedge.HeaderErrorClass, Value: []byte(class)},
			{Key: kafkaedge.HeaderStage, Value: []byte("validate")},
			{Key: kafkaedge.HeaderSourceTopic, Value: []byte("orders")},
			{Key: kafkaedge.HeaderSourcePartition, Value: []byte("3")},
			{Key: kafkaedge.HeaderSourceOffset, Value: []byte("12345")},
			{Key: "traceparent", Value: []byte("00-abc")},
		},
	}
}

func testLetters() []kafkaedge.Record {
	return []kafkaedge.Record{
		letterRecord(0, 7, "decode", "invalid character 'x' looking for beginning of value", "b563feb7b2b84b6test"),
		letterRecord(11, 123456, "validation", "payment.amount: want goods_total + delivery_cost + custom_fee = 1817, got 1816; "+
			"items[0].total_price: want price*(100-sale)/100\tand\nmore detail that goes on and on", "k"),
		letterRecord(0, 8, "decode", "unexpected end of JSON input", "ключ-ünïcode"),
		letterRecord(2, 42, "data", "ERROR: value too long for type character varying(64) (SQLSTATE 22001)", ""),
	}
}

// The table's columns start at the same place on every row (the header's), a
// long reason is cut to the width with an ellipsis, the counts by class follow,
// and no value is printed.
func TestPrintDLQTable(t *testing.T) {
	var buf bytes.Buffer
	o := dlqOptions{topic: "orders-dlq", limit: 3, format: "table", reasonWidth: 40}
	if err := printDLQ(&buf, o, testLetters()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "personal") {
		t.Fatalf("a value was printed:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "dlq orders-dlq: 4 records" {
		t.Fatalf("first line %q", lines[0])
	}
	header := []rune(lines[2])
	names := []string{"PARTITION", "OFFSET", "TIME", "CLASS", "REASON", "KEY", "SOURCE"}
	starts := make([]int, len(names))
	for i, n := range names {
		starts[i] = strings.Index(string(header), n) // ASCII: byte index = rune index
		if starts[i] < 0 || (i > 0 && starts[i] <= starts[i-1]) {
			t.Fatalf("header %q lacks %s in order", lines[2], n)
		}
	}
	wantRows := [][]string{
		{"0", "7", "2026-12-03T12:00:00.007Z", "decode", "invalid character 'x' looking for begin…", "b563feb7b2b84b6test", "orders/3@12345"},
		{"11", "123456", "2026-12-03T12:02:03.456Z", "validation", "payment.amount: want goods_total + deli…", "k", "orders/3@12345"},
		{"0", "8", "2026-12-03T12:00:00.008Z", "decode", "unexpected end of JSON input", "ключ-ünïcode", "orders/3@12345"},
	}
	for r, want := range wantRows {
		row := []rune(lines[3+r])
		for i := range names {
			end := len(row)
			if i+1 < len(names) {
				end = starts[i+1]
				if row[end-1] != ' ' || row[end] == ' ' {
					t.Fatalf("row %d %q: column %s does not start at %d (the header's)", r, lines[3+r], names[i+1], end)
				}
			}
			if got := strings.TrimSpace(string(row[starts[i]:end])); got != want[i] {
				t.Errorf("row %d column %s = %q, want %q", r, names[i], got, want[i])
			}
		}
		if reason := want[4]; strings.HasSuffix(reason, "…") && utf8.RuneCountInString(reason) != 40 {
			t.Fatalf("test expectation: cut reason %q is not 40 characters", reason)
		}
	}
	rest := strings.Join(lines[6:], "\n")
	for _, want := range []string{"... 1 more (use --limit)", "CLASS       RECORDS\ndata        1\ndecode      2\nvalidation  1\n"} {
		if !strings.Contains(rest, want) {
			t.Errorf("after the table, want %q in:\n%s", want, rest)
		}
	}
}

// --format json prints one object a line with the x-* headers, no value, and
// no counts; --limit 0 prints every record.
func TestPrintDLQJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := printDLQ(&buf, dlqOptions{topic: "orders-dlq", limit: 0, format: "json"}, testLetters()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 || strings.Contains(buf.String(), "personal") {
		t.Fatalf("want 4 JSON lines without values, got:\n%s", buf.String())
	}
	var l dlqLine
	if err := json.Unmarshal([]byte(lines[1]), &l); err != nil {
		t.Fatal(err)
	}
	if l.Partition != 11 || l.Offset != 123456 || l.Class != "validation" || l.Stage != "validate" || l.Key != "k" ||
		!strings.HasSuffix(l.Reason, "on and on") || l.ValueBytes != 21 || l.Headers[kafkaedge.HeaderSourceOffset] != "12345" ||
		l.Headers["traceparent"] != "" || l.Time == nil || !l.Time.Equal(time.Date(2026, 12, 3, 12, 2, 3, 456e6, time.UTC)) {
		t.Fatalf("json line %+v", l)
	}
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "-",
		"short":            "short",
		"a\tb\n\nc":        "a b c",
		"exactly ten":      "exactly t…",
		"0123456789":       "0123456789",
		"ünïcödé ünïcödé!": "ünïcödé ü…",
		"bad\x00\x1bbytes": "badbytes",
	} {
		if got := cell(in, 10); got != want {
			t.Errorf("cell(%q, 10) = %q, want %q", in, got, want)
		}
	}
}
