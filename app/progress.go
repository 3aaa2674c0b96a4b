package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progressStats is what a progress line shows.
type progressStats struct {
	total               int64 // records to send; <= 0: unknown (no ETA)
	sent, acked, failed int64
	elapsed             time.Duration
}

// formatProgress renders one progress line: sent (of the total), acknowledged,
// failed, the acknowledged rate over the run, and the ETA of the rest at that
// rate when the total is known.
func formatProgress(s progressStats) string {
	var b strings.Builder
	b.WriteString("produce: ")
	b.WriteString(groupDigits(s.sent))
	if s.total > 0 {
		b.WriteString("/" + groupDigits(s.total))
	}
	fmt.Fprintf(&b, " sent, %s acknowledged, %s failed", groupDigits(s.acked), groupDigits(s.failed))
	rate := 0.0
	if sec := s.elapsed.Seconds(); sec > 0 {
		rate = float64(s.acked) / sec
	}
	fmt.Fprintf(&b, ", %s/s", groupDigits(int64(rate+0.5)))
	if s.total > 0 {
		left := s.total - s.acked - s.failed
		switch {
		case left <= 0:
			b.WriteString(", ETA 0s")
		case rate <= 0:
			b.WriteString(", ETA --")
		default:
			eta := time.Duration(float64(left) / rate * float64(time.Second))
			b.WriteString(", ETA " + formatETA(eta))
		}
	}
	return b.String()
}

// formatETA rounds d to whole seconds and prints it as 42s, 3m07s or 2h05m.
func formatETA(d time.Duration) string {
	s := int64((d + time.Second/2) / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

// groupDigits prints n with thousands separators (1,234,567).
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// The progress line's pace: on a terminal it is rewritten in place (at most 4
// times a second), elsewhere (a log, a pipe) a plain line every few seconds.
const (
	terminalEvery = 250 * time.Millisecond
	plainEvery    = 5 * time.Second
)

// clearLine returns the cursor to the start of the line and clears it.
const clearLine = "\r\x1b[K"

// progressReporter shows the progress of a run on w: on a terminal one line
// rewritten in place, else a plain line per tick. Ticks come from run's
// channel, the numbers from stats.
type progressReporter struct {
	w        io.Writer
	terminal bool
	stats    func() progressStats
	mu       sync.Mutex
	drawn    bool // a line is on the terminal, not yet ended
}

// tick shows the current progress.
func (r *progressReporter) tick() {
	line := formatProgress(r.stats())
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.terminal {
		fmt.Fprint(r.w, clearLine+line)
		r.drawn = true
		return
	}
	fmt.Fprintln(r.w, line)
}

// run ticks on every value of ticks until stop is closed.
func (r *progressReporter) run(ticks <-chan time.Time, stop <-chan struct{}) {
	for {
		select {
		case <-ticks:
			r.tick()
		case <-stop:
			return
		}
	}
}

// finish clears the terminal's progress line, so that the run's summary
// (printed by the caller) stands alone; a plain writer keeps its lines.
func (r *progressReporter) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.terminal && r.drawn {
		fmt.Fprint(r.w, clearLine)
		r.drawn = false
	}
}

// startProgress shows progress on w until the returned stop is called: in
// place on a terminal, a plain line every few seconds elsewhere.
func startProgress(w io.Writer, stats func() progressStats) (stop func()) {
	r := &progressReporter{w: w, terminal: isTerminal(w), stats: stats}
	every := plainEvery
	if r.terminal {
		every = terminalEvery
	}
	t := time.NewTicker(every)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.run(t.C, done) })
	return func() {
		t.Stop()
		close(done)
		wg.Wait()
		r.finish()
	}
}
