package ordersdb

import (
	"errors"
	"strings"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/modules/dberr"
)

// redactedError hides the message text of a PostgreSQL error about the rows
// written, keeping everything else of the chain (prefixes, errors.Is/As).
// PostgreSQL quotes row values in such messages (invalid input syntax for a
// value, a trigger's RAISE with NEW.name, ...), and these errors end up in logs
// and in DLQ headers, which must never carry an order's personal data.
type redactedError struct {
	err  error  // the original chain, for Unwrap
	text string // err.Error() with the server message replaced
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err unchanged unless it holds a PostgreSQL server error whose
// message may quote row values (SQLSTATE classes 22 data exception and 23
// integrity violation, and P0 raised by PL/pgSQL). Those are rewritten to name
// only the SQLSTATE and the schema objects involved (table, column, constraint).
func redact(err error) error {
	var pg pgdriver.Error
	if err == nil || !errors.As(err, &pg) {
		return err
	}
	code := pg.Field('C')
	if !strings.HasPrefix(code, "22") && !strings.HasPrefix(code, "23") && !strings.HasPrefix(code, "P0") {
		return err
	}
	var b strings.Builder
	b.WriteString(pg.Field('S'))
	b.WriteString(": ")
	b.WriteString(dberr.Classify(pg).String())
	b.WriteString(" error, message withheld (SQLSTATE=")
	b.WriteString(code)
	b.WriteString(")")
	for _, f := range []struct {
		name string
		code byte
	}{{"table", 't'}, {"column", 'c'}, {"constraint", 'n'}} {
		if v := pg.Field(f.code); v != "" {
			b.WriteString(" ")
			b.WriteString(f.name)
			b.WriteString("=")
			b.WriteString(v)
		}
	}
	return &redactedError{err: err, text: strings.Replace(err.Error(), pg.Error(), b.String(), 1)}
}
