package orders

import "fmt"

// Error classes of invalid input; they are the x-error-class values of DLQ records.
const (
	ClassDecode     = "decode"
	ClassValidation = "validation"
)

// InvalidError is a permanent input error: the message or request can never be
// stored as it is. Field names the offending JSON path (e.g. "payment.goods_total")
// when there is one.
type InvalidError struct {
	Class  string // ClassDecode or ClassValidation
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Class + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s: %s", e.Class, e.Field, e.Reason)
}
