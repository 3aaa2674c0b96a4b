// Package dberr is the one classification of PostgreSQL errors: Transient (retry
// the same work later), Data (the rows written are at fault) or Fatal. The ingest
// flow retries, bisects or stops by it; the HTTP shell answers 503 for Transient.
package dberr

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// Class says what a caller should do about a database error.
type Class int

// The classes of database errors.
const (
	// Fatal errors will not go away by retrying or by changing the data: a
	// missing table, a bad configuration, a bug. Stop and report.
	Fatal Class = iota
	// Transient errors are about the server or the connection, not the data:
	// retry the same work later (connection lost, serialization failure,
	// deadlock, too many connections, server shutting down, timeouts).
	Transient
	// Data errors are caused by the rows written (SQLSTATE classes 22 and 23 and
	// a few like them): the same data fails again; split the batch to find it.
	Data
)

// String returns "fatal", "transient" or "data".
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Data:
		return "data"
	default:
		return "fatal"
	}
}

// Classify is the one place that classifies database errors; err may be wrapped.
// Server errors are classified by SQLSTATE, connection and network failures, a
// closed pool and context cancellation or deadline are Transient, anything
// unknown is Fatal.
// Classify(nil) is Fatal: callers classify only failures.
func Classify(err error) Class {
	if err == nil {
		return Fatal
	}
	var pgErr interface{ Field(byte) string } // pgdriver.Error
	if errors.As(err, &pgErr) {
		return classifySQLState(pgErr.Field('C'))
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return Transient
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return Transient
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return Transient
	}
	if strings.Contains(err.Error(), "sql: database is closed") { // database/sql's unexported errDBClosed
		return Transient
	}
	return Fatal
}

// classifySQLState maps a SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html).
func classifySQLState(code string) Class {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57014", // query_canceled (statement_timeout)
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now
		"25006", // read_only_sql_transaction: the server became a standby (a failover); the pool reconnects to the new primary
		"58030": // io_error (server side)
		return Transient
	case "42804", // datatype_mismatch
		"54000": // program_limit_exceeded (e.g. a value too large to index)
		return Data
	}
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"): // insufficient resources (53300 too_many_connections, disk full, OOM)
		return Transient
	case strings.HasPrefix(code, "22"), // data exception
		strings.HasPrefix(code, "23"): // integrity constraint violation
		return Data
	}
	return Fatal
}
