package orders

import _ "embed"

//go:embed sample.json
var sample []byte

// SampleUID is the order_uid of the canonical sample order.
const SampleUID = "b563feb7b2b84b6test"

// Sample returns the canonical sample order (sample.json, the order the task's
// model is defined by) as JSON, a fresh copy on every call. It is the one copy of
// the sample: `app dev` publishes it, and tests load it from here.
func Sample() []byte { return append([]byte(nil), sample...) }
