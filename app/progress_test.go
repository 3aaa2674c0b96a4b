package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestFormatProgress(t *testing.T) {
	cases := []struct {
		s    progressStats
		want string
	}{
		{
			progressStats{total: 100000, sent: 40000, acked: 39500, failed: 500, elapsed: 10 * time.Second},
			"produce: 40,000/100,000 sent, 39,500 acknowledged, 500 failed, 3,950/s, ETA 15s",
		},
		{
			progressStats{total: 1000000, sent: 1200, acked: 1000, elapsed: time.Second},
			"produce: 1,200/1,000,000 sent, 1,000 acknowledged, 0 failed, 1,000/s, ETA 16m39s",
		},
		{
			progressStats{total: 10000000, sent: 500, acked: 500, elapsed: 2 * time.Second},
			"produce: 500/10,000,000 sent, 500 acknowledged, 0 failed, 250/s, ETA 11h06m",
		},
		{
			progressStats{total: 50, sent: 10, elapsed: 0},
			"produce: 10/50 sent, 0 acknowledged, 0 failed, 0/s, ETA --",
		},
		{
			progressStats{total: 50, sent: 50, acked: 48, failed: 2, elapsed: time.Second},
			"produce: 50/50 sent, 48 acknowledged, 2 failed, 48/s, ETA 0s",
		},
		{progressStats{sent: 7, acked: 7, elapsed: time.Second}, // total unknown: no ETA
			"produce: 7 sent, 7 acknowledged, 0 failed, 7/s"},
	}
	for _, tc := range cases {
		if got := formatProgress(tc.s); got != tc.want {
			t.Errorf("formatProgress(%+v)\n got %q\nwant %q", tc.s, got, tc.want)
		}
	}
}

// reporter runs a reporter on buf in the given mode for the given ticks, with
// the sent count going up by 10 per tick, and returns what it wrote.
func reporterOutput(terminal bool, ticks int) string {
	var buf bytes.Buffer
	n := int64(0)
	r := &progressReporter{w: &buf, terminal: terminal, stats: func() progressStats {
		n += 10
		return progressStats{total: 100, sent: n, acked: n, elapsed: time.Second}
	}}
	ch := make(chan time.Time)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { r.run(ch, stop); close(done) }()
	for range ticks {
		ch <- time.Time{}
	}
	close(stop)
	<-done
	r.finish()
	return buf.String()
}

// Written to a file or a pipe (here a buffer), progress is one plain line per
// tick, no carriage returns or escapes.
func TestProgressPlainLines(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Fatal("a buffer taken for a terminal")
	}
	out := reporterOutput(false, 3)
	if strings.ContainsAny(out, "\r\x1b") {
		t.Fatalf("plain output has control characters: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		"produce: 10/100 sent, 10 acknowledged, 0 failed, 10/s, ETA 9s",
		"produce: 20/100 sent, 20 acknowledged, 0 failed, 20/s, ETA 4s",
		"produce: 30/100 sent, 30 acknowledged, 0 failed, 30/s, ETA 2s",
	}
	if len(lines) != len(want) || !strings.HasSuffix(out, "\n") {
		t.Fatalf("got %d lines %q, want %d ending in a newline", len(lines), out, len(want))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d %q, want %q", i, lines[i], want[i])
		}
	}
}

// On a terminal the line is rewritten in place (no newline) and cleared at the
// end, so the summary printed after it stands alone.
func TestProgressTerminalInPlace(t *testing.T) {
	out := reporterOutput(true, 2)
	want := clearLine + "produce: 10/100 sent, 10 acknowledged, 0 failed, 10/s, ETA 9s" +
		clearLine + "produce: 20/100 sent, 20 acknowledged, 0 failed, 20/s, ETA 4s" +
		clearLine
	if out != want {
		t.Fatalf("terminal output\n got %q\nwant %q", out, want)
	}
	if got := reporterOutput(true, 0); got != "" {
		t.Fatalf("nothing drawn, yet finish wrote %q", got)
	}
}
