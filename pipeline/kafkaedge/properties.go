package kafkaedge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
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
// manages itself: Property is the librdkafka name, or empty when only the
// properties in Together (several) are refused together; Reason says why.
type PropertyError struct {
	Kind     ClientKind
	Property string
	Together []string
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
	"topic.blacklist":      "it hides topics from the client as if they did not exist: the source would sit idle, assigned nothing",
}

// securityReason is why the connection's security properties are refused.
const securityReason = "connection security has its own keys (kafka.security_protocol, kafka.sasl_*, kafka.ssl_*), which reach every client, the admin client too"

// managedPrefixes are families of properties that have keys of their own:
// every security setting of librdkafka (security.protocol, sasl.*, ssl.*, the
// ssl_* and enable.ssl.* / enable.sasl.* switches such as
// enable.ssl.certificate.verification, the https.* of the OIDC token
// endpoint) and confluent-kafka-go's go.*.
var managedPrefixes = []struct{ prefix, reason string }{
	{"security.", securityReason},
	{"sasl.", securityReason},
	{"ssl.", securityReason},
	{"ssl_", securityReason},
	{"enable.ssl.", securityReason},
	{"enable.sasl.", securityReason},
	{"https.", securityReason},
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
		"offset.store.method":           "offsets are committed to the group on the broker (in the dead-letter transactions)",
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
		"delivery.report.only.error": "every write waits for its delivery report: with reports of failures only, API writes time out (503) " +
			"and app produce counts nothing acknowledged",
		"queuing.strategy": "fifo: the versions of an order must be produced in the order they were written",
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

// checkedClient is one client the service builds from the pass-through
// properties of its kind, with the map it is built from (no brokers).
type checkedClient struct {
	name string
	kind ClientKind
	cm   kafka.ConfigMap
}

// CheckProperties checks c's pass-through properties (Config.Consumer,
// Config.Producer) before they are in use: none managed by the service
// (Managed), then librdkafka's verdict on the exact maps the service builds
// its clients from with them (the source's consumer, the DLQ reader, the
// dead-letter transactional producer, the API's appender with appendTimeout,
// the tools' producer), created with no brokers (they never connect) and their
// logs captured, side by side. An unknown property, an invalid value, a value
// that conflicts with the service's own settings or with another pass-through
// property, or a property of the other kind of client (which librdkafka would
// ignore with a warning) is refused. It returns the first problem, consumer
// properties first and in name order, as a *PropertyError; nothing is built
// when no property is set.
func CheckProperties(c Config, appendTimeout time.Duration) error {
	user := map[ClientKind]map[string]string{KindConsumer: c.Consumer, KindProducer: c.Producer}
	for _, kind := range []ClientKind{KindConsumer, KindProducer} {
		if err := checkManaged(kind, user[kind]); err != nil {
			return err
		}
	}
	s := settings{security: c.Security(), props: user}
	clients := map[ClientKind][]checkedClient{
		KindConsumer: {
			{"the source's consumer", KindConsumer, s.consumer(SourceConfig{Topic: c.Topic, GroupID: c.GroupID, InstanceID: c.InstanceID}.withDefaults())},
			{"the DLQ reader", KindConsumer, s.reader("")},
		},
		KindProducer: {
			{"the dead-letter producer", KindProducer, s.transactional(CommitterConfig{TransactionalID: c.GroupID + "-config-check"}.withDefaults())},
			{"the API's appender", KindProducer, s.appender("", "order-service-api", appendTimeout)},
			{"the tools' producer", KindProducer, s.producer("", "order-service-tool")},
		},
	}
	var checks []func() error // in the order their problems are reported
	for _, kind := range []ClientKind{KindConsumer, KindProducer} {
		if len(user[kind]) == 0 {
			continue
		}
		if lv, ok := user[kind]["log_level"]; ok { // its own value; the clients below log at level 7
			checks = append(checks, func() error {
				if err := newClient(kind, kafka.ConfigMap{"log_level": lv}); err != nil {
					return &PropertyError{Kind: kind, Property: "log_level", Reason: strings.TrimSpace(err.Error())}
				}
				return nil
			})
		}
		for _, cl := range clients[kind] {
			delete(cl.cm, "bootstrap.servers")
			checks = append(checks, func() error { return cl.check(user[kind]) })
		}
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() { errs[i] = check() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkManaged returns a *PropertyError for the first of props (in name order)
// the service manages itself.
func checkManaged(kind ClientKind, props map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(props)) {
		if r := Managed(kind, name); r != "" {
			return &PropertyError{Kind: kind, Property: name, Reason: "managed by the service: " + r}
		}
	}
	return nil
}

// check creates the client from its map and returns librdkafka's refusal of a
// user property (the pass-through properties of its kind) as a *PropertyError.
func (cl checkedClient) check(user map[string]string) error {
	logs := make(chan kafka.LogEvent, 64)
	cm := maps.Clone(cl.cm)
	maps.Copy(cm, kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": logs, "log_level": 7})
	var warned []string // user properties librdkafka warns are of the other kind
	err := create(cl.kind, cm, func() {
		for _, msg := range configWarnings(logs) {
			if strings.Contains(msg, wrongKindMarker) {
				warned = append(warned, mentioned(msg, user)...)
			}
		}
	})
	if err != nil {
		return cl.blame(err, user)
	}
	if len(warned) > 0 {
		slices.Sort(warned)
		return &PropertyError{
			Kind: cl.kind, Property: warned[0],
			Reason: fmt.Sprintf("a %s property, which a %s ignores (set it under kafka.%s)", otherKind(cl.kind), cl.kind, otherKind(cl.kind)),
		}
	}
	return nil
}

// blame turns librdkafka's refusal of the client's map into a *PropertyError
// naming the user properties involved: those its message names (by their name
// or an alias), else the first that is refused on its own with the service's
// settings, else all of them (only together are they refused).
func (cl checkedClient) blame(err error, user map[string]string) error {
	msg := strings.TrimSpace(err.Error())
	names := mentioned(msg, user)
	if len(names) == 0 {
		base := maps.Clone(cl.cm)
		for name := range user {
			delete(base, name)
		}
		for _, name := range slices.Sorted(maps.Keys(user)) {
			one := maps.Clone(base)
			one[name] = user[name]
			if err := create(cl.kind, one); err != nil {
				names, msg = []string{name}, strings.TrimSpace(err.Error())
				break
			}
		}
	}
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(user))
	}
	if strings.HasPrefix(msg, "No such configuration property") {
		_, v := kafka.LibraryVersion()
		msg = "unknown librdkafka property (librdkafka " + v + ")"
	}
	var theirs []string // the service's settings the message names
	for _, name := range slices.Sorted(maps.Keys(cl.cm)) {
		if _, ok := user[name]; !ok && mentions(msg, name) {
			theirs = append(theirs, fmt.Sprintf("%s=%v", name, cl.cm[name]))
		}
	}
	if len(theirs) > 0 {
		msg = fmt.Sprintf("%s (librdkafka, on %s, where the service sets %s)", msg, cl.name, strings.Join(theirs, ", "))
	}
	if len(names) == 1 {
		return &PropertyError{Kind: cl.kind, Property: names[0], Reason: msg}
	}
	return &PropertyError{Kind: cl.kind, Together: names, Reason: fmt.Sprintf("%s (together: %s)", msg, strings.Join(names, ", "))}
}

// aliases are librdkafka's other names of a property (CONFIGURATION.md), so a
// message that names one points at the property the user set by the other.
var aliases = map[string][]string{
	"linger.ms":                             {"queue.buffering.max.ms"},
	"queue.buffering.max.ms":                {"linger.ms"},
	"compression.type":                      {"compression.codec"},
	"compression.codec":                     {"compression.type"},
	"retries":                               {"message.send.max.retries"},
	"message.send.max.retries":              {"retries"},
	"max.in.flight":                         {"max.in.flight.requests.per.connection"},
	"max.in.flight.requests.per.connection": {"max.in.flight"},
	"max.partition.fetch.bytes":             {"fetch.message.max.bytes"},
	"fetch.message.max.bytes":               {"max.partition.fetch.bytes"},
}

// mentioned returns the names of props (in name order) that msg names, by
// their own name or an alias.
func mentioned(msg string, props map[string]string) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(props)) {
		if mentions(msg, name) || slices.ContainsFunc(aliases[name], func(a string) bool { return mentions(msg, a) }) {
			out = append(out, name)
		}
	}
	return out
}

// mentions reports whether msg names property as a whole word (a run of
// letters, digits, '_' and '.', trimmed of '.': "`linger.ms`." names linger.ms,
// "message.max.bytes" does not name max.bytes).
func mentions(msg, property string) bool {
	words := strings.FieldsFunc(strings.ToLower(msg), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.')
	})
	for _, w := range words {
		if strings.Trim(w, ".") == property {
			return true
		}
	}
	return false
}

// wrongKindMarker is the end of librdkafka's warning about a property of the
// other kind of client ("Configuration property fetch.max.bytes is a consumer
// property and will be ignored by this producer instance").
const wrongKindMarker = " property and will be ignored by this "

// noBrokersMarker is librdkafka's last configuration warning of a producer
// with no bootstrap.servers: every earlier warning has been logged when it comes.
const noBrokersMarker = "No `bootstrap.servers` configured"

// quietLog is how long a throwaway client's log must stay quiet before its
// configuration warnings are taken as complete (they are queued during its
// creation and forwarded within microseconds).
const quietLog = 250 * time.Millisecond

// configWarnings returns the CONFWARN messages a just created client logs to
// logs: they are logged during its creation and forwarded at once, so they are
// over when the log stays quiet, or at a producer's warning about its missing
// brokers, its last one (a transactional producer and a consumer log none). It
// waits 2 s at most.
func configWarnings(logs <-chan kafka.LogEvent) []string {
	var out []string
	deadline := time.After(2 * time.Second)
	quiet := time.NewTimer(quietLog)
	defer quiet.Stop()
	for {
		select {
		case e := <-logs:
			quiet.Reset(quietLog)
			if e.Tag != "CONFWARN" {
				continue
			}
			if strings.Contains(e.Message, noBrokersMarker) {
				return out
			}
			out = append(out, e.Message)
		case <-quiet.C:
			return out
		case <-deadline:
			return out
		}
	}
}

// newClient creates a client of kind with cm plus what the service always
// sets on that kind (a placeholder group.id on a consumer, idempotence on a
// producer), and closes it: librdkafka's verdict on cm alone.
func newClient(kind ClientKind, cm kafka.ConfigMap) error {
	if kind == KindConsumer {
		cm["group.id"] = "orders-config-check"
	} else {
		cm["enable.idempotence"] = true
	}
	return create(kind, cm)
}

// create creates a client of kind with cm, runs each of then, and closes it.
// Its logs go to cm's go.logs.channel, or nowhere: never to the process's
// output.
func create(kind ClientKind, cm kafka.ConfigMap, then ...func()) error {
	if _, ok := cm["go.logs.channel.enable"]; !ok {
		cm["go.logs.channel.enable"] = true
		cm["go.logs.channel"] = make(chan kafka.LogEvent, 64)
	}
	var closeClient func()
	switch kind {
	case KindConsumer:
		c, err := kafka.NewConsumer(&cm)
		if err != nil {
			return err
		}
		closeClient = func() { _ = c.Close() }
	default:
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
// producer) the package builds from now on carry copies of c's pass-through
// properties (Config.Consumer, Config.Producer) on top of the service's own
// settings. The admin client gets neither. It refuses (with a
// *PropertyError, keeping the properties in use) a property the service
// manages; librdkafka's verdict is CheckProperties'. The service calls it once,
// after loading (and checking) its configuration.
func UseProperties(c Config) error {
	p := map[ClientKind]map[string]string{KindConsumer: maps.Clone(c.Consumer), KindProducer: maps.Clone(c.Producer)}
	for _, kind := range []ClientKind{KindConsumer, KindProducer} {
		if err := checkManaged(kind, p[kind]); err != nil {
			return err
		}
	}
	properties.Store(&p)
	return nil
}
