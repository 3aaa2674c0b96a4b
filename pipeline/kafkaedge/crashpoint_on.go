//go:build faultinject

package kafkaedge

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// crashPoint kills the process with SIGKILL at the named point of the n-th DLQ
// transaction when FAULTINJECT_CRASH is "point:n" (binaries built with the
// faultinject tag only, for the fault suite). Points: "txn-produced" (dead letters
// produced, offsets not yet sent) and "txn-offsets-sent" (both in the transaction,
// not committed).
func crashPoint(point string) {
	name, nth, ok := strings.Cut(os.Getenv("FAULTINJECT_CRASH"), ":")
	if !ok || name != point {
		return
	}
	n, err := strconv.ParseInt(nth, 10, 64)
	if err != nil || crashCounts.Add(1) != n {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never returns: the signal ends the process
}

var crashCounts atomic.Int64
