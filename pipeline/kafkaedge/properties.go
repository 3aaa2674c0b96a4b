package kafkaedge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ClientKind is the kind of librdkafka client a pass-through property is for.
type ClientKind string

// The client kinds of the pass-through properties (Config.Consumer, Config.Producer).
const (
	KindConsumer ClientKind = "consumer"
	KindProducer ClientKind = "producer"
)

// PropertyError is a pass-through property librdkafka refuses or the service
// manages itself: Property is the librdkafka name (empty when only the
// properties together are refused), Reason says why.
type PropertyError struct {
	Kind     ClientKind
	Property string
	Reason   string
}

func (e *PropertyError) Error() string {
	if e.Property == "" {
		return fmt.Sprintf("kafka.%s: %s", e.Kind, e.Reason)
	}
	return fmt.Sprintf("kafka.%s.%s: %s", e.Kind, e.Property, e.Reason)
}

// managedBoth are the properties of every client the service sets itself (or
// through its own keys), with the reason given to a user who sets them.
var managedBoth = map[string]string{
	"bootstrap.servers":    "set by kafka.brokers",
	"metadata.broker.list": "set by kafka.brokers",
	"group.id":             "set by kafka.group_id",
	"group.instance.id":    "set by kafka.instance_id",
}

// managedPrefixes are families of properties that have keys of their own.
var managedPrefixes = []struct{ prefix, reason string }{
	{"security.", "connection security has its own keys (kafka.security_protocol, kafka.sasl_*, kafka.ssl_*), which reach every client, the admin client too"},
	{"sasl.", "connection security has its own keys (kafka.security_protocol, kafka.sasl_*, kafka.ssl_*), which reach every client, the admin client too"},
	{"ssl.", "connection security has its own keys (kafka.security_protocol, kafka.sasl_*, kafka.ssl_*), which reach every client, the admin client too"},
	{"ssl_", "connection security has its own keys (kafka.security_protocol, kafka.sasl_*, kafka.ssl_*), which reach every client, the admin client too"},
	{"go.", "confluent-kafka-go's own settings: the service relies on how it delivers events, logs and delivery reports"},
}

// managed are the properties the service sets itself on one kind of client.
var managed = map[ClientKind]map[string]string{
	KindConsumer: {
		"enable.auto.commit":            "offsets are committed by the service once their batch is durable (or dead-lettered)",
		"auto.commit.enable":            "offsets are committed by the service once their batch is durable (or dead-lettered)",
		"enable.auto.offset.store":      "offsets are stored by the service once their batch is durable (or dead-lettered)",
		"isolation.level":               "read_committed: the dead letters are written in transactions, and aborted records must not be ingested",
		"enable.partition.eof":          "the source and the DLQ reader depend on its setting",
		"partition.assignment.strategy": "the source handles incremental (cooperative-sticky) rebalances only",
		"group.protocol":                "the source is built for the classic group protocol with cooperative-sticky",
		"group.remote.assignor":         "the source is built for the classic group protocol with cooperative-sticky",
		"auto.offset.reset":             "earliest: a new consumer group ingests the topic from its start, so nothing is skipped",
		"statistics.interval.ms":        "the source reads consumer lag and broker state from librdkafka's statistics",
		"check.crcs":                    "on: a corrupt record set is dead-lettered (class fetch) instead of decoded",
	},
	KindProducer: {
		"transactional.id":       "set by the service (per instance) for the dead-letter transactions",
		"transaction.timeout.ms": "set by the service for the dead-letter transactions",
		"enable.idempotence":     "on: the versions of an order must reach the log once and in order",
		"acks":                   "all: a record counts as written only once it is durable (idempotence needs it)",
		"request.required.acks":  "all: a record counts as written only once it is durable (idempotence needs it)",
		"message.max.bytes":      "the service's record bound (the DLQ topic is created for it)",
		"partitioner":            "murmur2_random (like the Java client) keeps the versions of an order on one partition",
		"message.timeout.ms":     "set by the service: api.append_timeout for API writes, the transaction timeout for dead letters",
		"delivery.timeout.ms":    "set by the service: api.append_timeout for API writes, the transaction timeout for dead letters",
	},
}

// Managed returns why the service refuses property as a pass-through for kind
// (empty: it may be set).
func Managed(kind ClientKind, property string) string {
	if r, ok := managedBoth[property]; ok {
		return r
	}
	if r, ok := managed[kind][property]; ok {
		return r
	}
	for _, p := range managedPrefixes {
		if strings.HasPrefix(property, p.prefix) {
			return p.reason
		}
	}
	return ""
}

// ValidateProperties checks the pass-through properties of one kind of client:
// none managed by the service (Managed), then librdkafka's own verdict on a
// throwaway client of that kind built from them alone (no brokers; it never
// connects): an unknown property, an invalid value, or a property of the other
// kind of client (which librdkafka would ignore with a warning). It returns
// the first problem, in property order, as a *PropertyError.
func ValidateProperties(kind ClientKind, props map[string]string) error {
	names := slices.Sorted(maps.Keys(props))
	for _, name := range names {
		if r := Managed(kind, name); r != "" {
			return &PropertyError{Kind: kind, Property: name, Reason: "managed by the service: " + r}
		}
	}
	if len(props) == 0 {
		return nil
	}
	if tryClient(kind, props) == nil {
		return nil
	}
	// Name the property: librdkafka stops at the first one it refuses and may
	// name it by an alias (linger.ms is queue.buffering.max.ms), so try each alone.
	for _, name := range names {
		if err := tryClient(kind, map[string]string{name: props[name]}); err != nil {
			reason := strings.TrimSpace(err.Error())
			if strings.HasPrefix(reason, "No such configuration property") {
				_, v := kafka.LibraryVersion()
				reason = "unknown librdkafka property (librdkafka " + v + ")"
			}
			return &PropertyError{Kind: kind, Property: name, Reason: reason}
		}
	}
	if err := tryClient(kind, props); err != nil { // each passes alone, not together
		return &PropertyError{Kind: kind, Reason: fmt.Sprintf("%s (together: %s)", strings.TrimSpace(err.Error()), strings.Join(names, ", "))}
	}
	return nil
}

// wrongKindMarker is the end of librdkafka's warning about a property of the
// other kind of client ("Configuration property fetch.max.bytes is a consumer
// property and will be ignored by this producer instance").
const wrongKindMarker = " property and will be ignored by this "

// noBrokersMarker is librdkafka's last configuration warning of a producer
// with no bootstrap.servers: every earlier warning has been logged when it comes.
const noBrokersMarker = "No `bootstrap.servers` configured"

// consumerQuiet is how long a throwaway consumer's log must stay quiet before
// its configuration warnings are taken as complete (they are queued during its
// creation and forwarded within microseconds).
const consumerQuiet = 250 * time.Millisecond

// tryClient creates and closes a client of kind with props and the service's
// fixed settings that librdkafka checks them against (idempotence for a
// producer; a placeholder group.id, which a consumer needs), but no brokers,
// its logs captured, not printed. It returns librdkafka's refusal: the
// creation's error, or a warning that a property is of the other kind.
func tryClient(kind ClientKind, props map[string]string) error {
	if lv, ok := props["log_level"]; ok { // its value alone; below, the warnings need level 7
		if err := newClient(kind, kafka.ConfigMap{"log_level": lv}); err != nil {
			return err
		}
	}
	logs := make(chan kafka.LogEvent, 64)
	cm := kafka.ConfigMap{}
	for k, v := range props {
		cm[k] = v
	}
	maps.Copy(cm, kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": logs, "log_level": 7})
	var wrong error
	check := func() {
		// A producer's last configuration warning is the one about its missing
		// brokers; a consumer logs none, so its warnings (logged during its
		// creation, forwarded at once) are over when the log stays quiet.
		deadline := time.After(2 * time.Second)
		quiet := time.NewTimer(consumerQuiet)
		defer quiet.Stop()
		for {
			select {
			case e := <-logs:
				quiet.Reset(consumerQuiet)
				if e.Tag != "CONFWARN" {
					continue
				}
				if strings.Contains(e.Message, wrongKindMarker) && wrong == nil {
					wrong = fmt.Errorf("a %s property, which a %s ignores (set it under kafka.%s)", otherKind(kind), kind, otherKind(kind))
				}
				if strings.Contains(e.Message, noBrokersMarker) {
					return
				}
			case <-quiet.C:
				if kind == KindConsumer {
					return
				}
			case <-deadline:
				return
			}
		}
	}
	if err := newClient(kind, cm, check); err != nil {
		return err
	}
	return wrong
}

// newClient creates a client of kind with cm (plus what the service always
// sets on that kind), runs each of then, and closes it.
func newClient(kind ClientKind, cm kafka.ConfigMap, then ...func()) error {
	if _, ok := cm["go.logs.channel.enable"]; !ok { // quiet: librdkafka's warnings are not the user's concern here
		cm["go.logs.channel.enable"] = true
		cm["go.logs.channel"] = make(chan kafka.LogEvent, 64)
	}
	var closeClient func()
	switch kind {
	case KindConsumer:
		cm["group.id"] = "orders-config-check"
		c, err := kafka.NewConsumer(&cm)
		if err != nil {
			return err
		}
		closeClient = func() { _ = c.Close() }
	default:
		cm["enable.idempotence"] = true
		p, err := kafka.NewProducer(&cm)
		if err != nil {
			return err
		}
		closeClient = p.Close
	}
	for _, f := range then {
		f()
	}
	closeClient()
	return nil
}

func otherKind(k ClientKind) ClientKind {
	if k == KindConsumer {
		return KindProducer
	}
	return KindConsumer
}

// properties holds the pass-through properties every client gets (UseProperties).
var properties atomic.Pointer[map[ClientKind]map[string]string]

// UseProperties makes every consumer (the source, the DLQ reader) and every
// producer (the dead-letter producer, the API's appender, the tools'
// producer) the package builds from now on carry c's pass-through properties
// (Config.Consumer, Config.Producer) on top of the service's own settings. The
// admin client gets neither. The service calls it once, after loading (and
// validating) its configuration.
func UseProperties(c Config) {
	p := map[ClientKind]map[string]string{KindConsumer: c.Consumer, KindProducer: c.Producer}
	properties.Store(&p)
}

// withProperties adds the pass-through properties of kind to cm.
func withProperties(kind ClientKind, cm kafka.ConfigMap) kafka.ConfigMap {
	if p := properties.Load(); p != nil {
		for k, v := range (*p)[kind] {
			cm[k] = v
		}
	}
	return cm
}
