// Package configs holds the service's default configuration and its loader: the
// embedded default.yaml, an optional file, then ORDERS_* environment variables.
package configs

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/orderflow/orders-service/pipeline/ingest"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

//go:embed default.yaml
var defaultYAML []byte

// EnvPrefix is the prefix of every configuration environment variable.
const EnvPrefix = "ORDERS_"

// Config is the whole service configuration.
type Config struct {
	Postgres Postgres `koanf:"postgres"`
	Kafka    Kafka    `koanf:"kafka"`
	HTTP     HTTP     `koanf:"http"`
	API      API      `koanf:"api"`
	Cache    Cache    `koanf:"cache"`
	Pipeline Pipeline `koanf:"pipeline"`
	Log      Log      `koanf:"log"`
	Tracing  Tracing  `koanf:"tracing"`
}

// Postgres configures the database connection.
type Postgres struct {
	DSN            string `koanf:"dsn"`
	PoolSize       int    `koanf:"pool_size"`
	MigrateOnStart bool   `koanf:"migrate_on_start"`
	// ReadDSN is an optional read replica (a streaming standby of DSN) for cache
	// misses and lists; empty: every read goes to the primary.
	ReadDSN string `koanf:"read_dsn"`
	// ReadSlots bounds the connections of the pool that API reads (cache
	// misses, list pages) may hold at once, so they never starve the batch
	// writers, the change feed or the readiness check; 0: pool_size - writers - 3.
	ReadSlots int `koanf:"read_slots"`
	// ReadWait is how long an API read waits for a slot before it is shed (503
	// with Retry-After) instead of queueing.
	ReadWait time.Duration `koanf:"read_wait"`
}

// Kafka configures the broker connection and topics (the Kafka edge's own type).
type Kafka = kafkaedge.Config

// HTTP configures the API listener.
type HTTP struct {
	Addr         string        `koanf:"addr"`
	ReadTimeout  time.Duration `koanf:"read_timeout"`
	WriteTimeout time.Duration `koanf:"write_timeout"`
	IdleTimeout  time.Duration `koanf:"idle_timeout"`
	BodyLimit    int           `koanf:"body_limit"`
}

// API configures access to mutating and admin endpoints.
type API struct {
	Token string `koanf:"token"`
	// AppendTimeout bounds the broker's acknowledgement of a PUT or DELETE
	// appended to the orders topic (past it: 503).
	AppendTimeout time.Duration `koanf:"append_timeout"`
	// ApplyWait bounds the wait for a PUT or DELETE to be applied (past it: 202).
	ApplyWait time.Duration `koanf:"apply_wait"`
	// ListConcurrency bounds the list pages served at once (their rows and JSON
	// take CPU and connections the ingestion needs); past it, after
	// postgres.read_wait, a page gets 503 with Retry-After.
	ListConcurrency int `koanf:"list_concurrency"`
}

// Cache configures the in-memory order cache.
type Cache struct {
	MaxBytes      int64         `koanf:"max_bytes"`
	NegativeTTL   time.Duration `koanf:"negative_ttl"`
	DBTimeout     time.Duration `koanf:"db_timeout"`
	WarmupOnStart bool          `koanf:"warmup_on_start"`
	// Feed turns on the change feed between instances: each batch announces
	// what it stored, and every instance drops its cached versions older than
	// that. Set it the same on every instance; off only for a single instance.
	Feed bool `koanf:"feed"`
	// FeedPoll is the longest time between two reads of the feed (a NOTIFY wakes
	// the readers at once).
	FeedPoll time.Duration `koanf:"feed_poll"`
	// CoherenceBound is the staleness bound: an instance that has not confirmed
	// it read the feed up to date within it bypasses its cache (reads go to the
	// database) until it has.
	CoherenceBound time.Duration `koanf:"coherence_bound"`
	// FeedRetention is how long feed rows are kept.
	FeedRetention time.Duration `koanf:"feed_retention"`
}

// Pipeline configures the ingestion pipeline (the ingest flow's own type).
type Pipeline = ingest.Config

// Log configures structured logging.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Tracing configures OpenTelemetry export.
type Tracing struct {
	Exporter string `koanf:"exporter"`
	// Endpoint is the collector: https://host:port exports over TLS (verified
	// against the system's CAs or CAFile), http://host:port or a bare host:port
	// in plain text.
	Endpoint    string  `koanf:"endpoint"`
	CAFile      string  `koanf:"ca_file"`
	SampleRatio float64 `koanf:"sample_ratio"`
}

// Error is a configuration error; its message names the key (and the environment
// variable that sets it) and what is wrong, in one line.
type Error struct {
	Key    string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("config: %s (%s): %s", e.Key, EnvName(e.Key), e.Reason)
}

// EnvName returns the environment variable that sets key, e.g. kafka.dlq_topic ->
// ORDERS_KAFKA_DLQ_TOPIC. A pass-through key's librdkafka property has its
// dots written as "_" and its underscores as "__": kafka.consumer.fetch.max.bytes
// -> ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTES, kafka.producer.log_level ->
// ORDERS_KAFKA_PRODUCER_LOG__LEVEL.
func EnvName(key string) string {
	if section, prop, ok := passThrough(key); ok {
		return EnvPrefix + strings.ToUpper(strings.ReplaceAll(section, ".", "_")+"_"+
			strings.ReplaceAll(strings.ReplaceAll(prop, "_", "__"), ".", "_"))
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// passThroughSections are the sections whose keys are librdkafka properties
// (kafka.consumer.fetch.max.bytes), passed through to the clients.
var passThroughSections = []string{"kafka.consumer", "kafka.producer"}

// passThrough splits a pass-through key into its section and librdkafka property.
func passThrough(key string) (section, prop string, ok bool) {
	for _, s := range passThroughSections {
		if p, found := strings.CutPrefix(key, s+"."); found && p != "" {
			return s, p, true
		}
	}
	return "", "", false
}

// passThroughEnv maps an environment variable of a pass-through section
// (ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTES) to its key
// (kafka.consumer.fetch.max.bytes): the inverse of EnvName.
func passThroughEnv(name string) (string, bool) {
	for _, s := range passThroughSections {
		rest, found := strings.CutPrefix(name, EnvPrefix+strings.ToUpper(strings.ReplaceAll(s, ".", "_"))+"_")
		if !found || rest == "" {
			continue
		}
		parts := strings.Split(strings.ToLower(rest), "__")
		for i, p := range parts {
			parts[i] = strings.ReplaceAll(p, "_", ".")
		}
		return s + "." + strings.Join(parts, "_"), true
	}
	return "", false
}

// Keys returns every configuration key (e.g. "kafka.dlq_topic"), sorted.
func Keys() []string {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(defaultYAML), yaml.Parser()); err != nil {
		panic(err) // the embedded defaults are part of the binary and tested
	}
	keys := k.Keys()
	sort.Strings(keys)
	return keys
}

// EnvNames returns every ORDERS_* environment variable the service reads, sorted.
func EnvNames() []string {
	keys := Keys()
	out := make([]string, len(keys))
	for i, key := range keys {
		out[i] = EnvName(key)
	}
	return out
}

// Default returns the defaults (configs/default.yaml) with nothing overriding them.
func Default() Config {
	c, err := Load("", nil)
	if err != nil {
		panic(err) // the embedded defaults are part of the binary and tested
	}
	return c
}

// Load builds the configuration from the defaults, the optional file (path may be
// ""), then environ (KEY=VALUE pairs, usually os.Environ()). It returns an *Error
// for an unknown ORDERS_* variable, an unreadable file or a bad value.
func Load(path string, environ []string) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(defaultYAML), yaml.Parser()); err != nil {
		return Config{}, fmt.Errorf("config: embedded defaults: %w", err)
	}
	known := map[string]bool{}
	for _, key := range k.Keys() {
		known[key] = true
	}
	// The pass-through properties (kafka.consumer.*, kafka.producer.*) never go
	// through koanf: its nested paths cannot hold two librdkafka names of which
	// one is a prefix of the other (api.version.request and
	// api.version.request.timeout.ms).
	props := map[string]any{} // pass-through key -> value; the environment's replace the file's
	if path != "" {
		fk, fileProps, err := readFile(path, known)
		if err != nil {
			return Config{}, err
		}
		if err := k.Merge(fk); err != nil {
			return Config{}, fmt.Errorf("config: merge %s: %w", path, err)
		}
		maps.Copy(props, fileProps)
	}
	var unknown []string
	envKeys := map[string]string{}
	for _, key := range k.Keys() {
		envKeys[EnvName(key)] = key
	}
	ek := koanf.New(".")
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if key, ok := envKeys[name]; ok {
				return key, value
			}
			if key, ok := passThroughEnv(name); ok {
				props[key] = value
			} else {
				unknown = append(unknown, name)
			}
			return "", nil
		},
	}), nil)
	if err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return Config{}, &Error{Key: "environment", Reason: fmt.Sprintf("unknown variable %s; known: %s", unknown[0], strings.Join(EnvNames(), ", "))}
	}
	if err := k.Merge(ek); err != nil {
		return Config{}, fmt.Errorf("config: merge environment: %w", err)
	}
	var c Config
	for _, key := range k.Keys() {
		if err := decodeKey(k, key, &c); err != nil {
			return Config{}, err
		}
	}
	for _, key := range slices.Sorted(maps.Keys(props)) {
		section, prop, _ := passThrough(key)
		if err := c.setPassThrough(section, prop, props[key]); err != nil {
			return Config{}, err
		}
	}
	return c, c.Validate()
}

// readFile reads the YAML file at path: its ordinary keys (each one of known,
// else an *Error) as a koanf instance, and its pass-through properties apart,
// by key (kafka.consumer.fetch.max.bytes). A YAML key may hold dots, so every
// value's key is the dotted path of the names above it (kafka: {producer:
// {compression.type: lz4}} and kafka.producer.compression: {type: lz4} are one
// key, and setting both is an error naming it).
func readFile(path string, known map[string]bool) (*koanf.Koanf, map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, &Error{Key: "--config", Reason: err.Error()}
	}
	tree, err := yaml.Parser().Unmarshal(data)
	if err != nil {
		return nil, nil, &Error{Key: "--config", Reason: fmt.Sprintf("%s: %v", path, err)}
	}
	values := map[string]any{}
	if err := flatten("", tree, values, path); err != nil {
		return nil, nil, err
	}
	fk := koanf.New(".")
	props := map[string]any{}
	for _, key := range slices.Sorted(maps.Keys(values)) {
		v := values[key]
		switch _, _, pass := passThrough(key); {
		case pass:
			props[key] = v
		case slices.Contains(passThroughSections, key):
			if v != nil { // an empty section (all its lines commented out) is none
				return nil, nil, &Error{Key: key, Reason: fmt.Sprintf("want librdkafka properties (name: value) under it in %s, got %v", path, v)}
			}
		case !known[key]:
			return nil, nil, &Error{Key: key, Reason: fmt.Sprintf("unknown key in %s", path)}
		default:
			if err := fk.Set(key, v); err != nil {
				return nil, nil, &Error{Key: key, Reason: err.Error()}
			}
		}
	}
	return fk, props, nil
}

// flatten stores every value of the YAML tree v under prefix in out, by its
// dotted key; a key reached twice (by nested and dotted names) is an *Error.
func flatten(prefix string, v any, out map[string]any, path string) error {
	var children map[string]any
	switch m := v.(type) {
	case map[string]any:
		children = m
	case map[any]any:
		children = make(map[string]any, len(m))
		for k, c := range m {
			children[fmt.Sprint(k)] = c
		}
	default:
		if _, dup := out[prefix]; dup {
			return &Error{Key: prefix, Reason: fmt.Sprintf("set twice in %s (by nested and by dotted names)", path)}
		}
		out[prefix] = v
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(children)) {
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if err := flatten(key, children[name], out, path); err != nil {
			return err
		}
	}
	return nil
}

// setPassThrough stores one librdkafka property of a pass-through section; its
// value must be a scalar (librdkafka takes every value as a string).
func (c *Config) setPassThrough(section, prop string, v any) error {
	key := section + "." + prop
	switch v.(type) {
	case string, bool, int, int64, uint64, float64:
	default:
		return &Error{Key: key, Reason: fmt.Sprintf("want a single value (a string or a number), got %v", v)}
	}
	m := &c.Kafka.Consumer
	if section == "kafka.producer" {
		m = &c.Kafka.Producer
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[prop] = fmt.Sprint(v)
	return nil
}

// decodeKey unmarshals one key so a type error names exactly that key.
func decodeKey(k *koanf.Koanf, key string, c *Config) error {
	one := koanf.New(".")
	if err := one.Set(key, k.Get(key)); err != nil {
		return &Error{Key: key, Reason: err.Error()}
	}
	if err := one.UnmarshalWithConf("", c, koanf.UnmarshalConf{}); err != nil {
		reason := strings.TrimSpace(err.Error())
		if i := strings.LastIndex(reason, "\n"); i >= 0 {
			reason = reason[i+1:]
		}
		reason = strings.TrimSpace(strings.TrimPrefix(reason, "'"+key+"'"))
		return &Error{Key: key, Reason: fmt.Sprintf("bad value %q: %s", fmt.Sprint(k.Get(key)), reason)}
	}
	return nil
}

// Validate checks every value and returns the first problem as an *Error.
// postgres.dsn may be empty here: serve requires it (RequireDSN), dev does not.
func (c Config) Validate() error {
	var first error
	check := func(ok bool, key, reason string) {
		if !ok && first == nil {
			first = &Error{Key: key, Reason: reason}
		}
	}
	if c.Postgres.DSN != "" {
		u, err := url.Parse(c.Postgres.DSN)
		check(err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host != "",
			"postgres.dsn", "want postgres://user:pass@host:port/db?sslmode=...")
	}
	if c.Postgres.ReadDSN != "" {
		u, err := url.Parse(c.Postgres.ReadDSN)
		check(err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host != "",
			"postgres.read_dsn", "want empty (reads on the primary) or postgres://user:pass@host:port/db?sslmode=...")
	}
	check(c.Postgres.PoolSize >= 1 && c.Postgres.PoolSize <= 1000, "postgres.pool_size", "want 1..1000")
	check(c.Postgres.ReadSlots >= 0 && c.Postgres.ReadSlots < c.Postgres.PoolSize, "postgres.read_slots",
		"want 0 (derived) or fewer than postgres.pool_size: the writers need connections of their own")
	check(c.Postgres.ReadWait >= 0, "postgres.read_wait", "want >= 0")
	check(validBrokers(c.Kafka.Brokers), "kafka.brokers", fmt.Sprintf("want comma-separated host:port list, got %q", c.Kafka.Brokers))
	check(validTopic(c.Kafka.Topic), "kafka.topic", fmt.Sprintf("want a Kafka topic name, got %q", c.Kafka.Topic))
	check(validTopic(c.Kafka.DLQTopic), "kafka.dlq_topic", fmt.Sprintf("want a Kafka topic name, got %q", c.Kafka.DLQTopic))
	check(c.Kafka.DLQTopic != c.Kafka.Topic, "kafka.dlq_topic", "must differ from kafka.topic")
	check(c.Kafka.GroupID != "", "kafka.group_id", "must not be empty")
	check(c.Kafka.InstanceID == "" || validTopic(c.Kafka.InstanceID), "kafka.instance_id",
		fmt.Sprintf("want empty or 1..249 letters, digits, '.', '_', '-', got %q", c.Kafka.InstanceID))
	check(c.Kafka.Partitions >= 1, "kafka.partitions", "want >= 1")
	check(c.Kafka.ReplicationFactor >= 1, "kafka.replication_factor", "want >= 1")
	_, _, err := net.SplitHostPort(c.HTTP.Addr)
	check(err == nil, "http.addr", fmt.Sprintf("want [host]:port, got %q", c.HTTP.Addr))
	check(c.HTTP.ReadTimeout > 0, "http.read_timeout", "want > 0")
	check(c.HTTP.WriteTimeout > 0, "http.write_timeout", "want > 0")
	check(c.HTTP.IdleTimeout > 0, "http.idle_timeout", "want > 0")
	check(c.HTTP.BodyLimit >= 1024, "http.body_limit", "want >= 1024 bytes")
	check(c.API.AppendTimeout > 0, "api.append_timeout", "want > 0")
	check(c.API.ApplyWait > 0, "api.apply_wait", "want > 0")
	check(c.API.ListConcurrency >= 1, "api.list_concurrency", "want >= 1")
	check(c.Cache.MaxBytes >= 1<<20, "cache.max_bytes", fmt.Sprintf("want >= 1048576 bytes, got %d", c.Cache.MaxBytes))
	check(c.Cache.NegativeTTL >= 0, "cache.negative_ttl", "want >= 0")
	check(c.Cache.DBTimeout > 0, "cache.db_timeout", "want > 0")
	if c.Postgres.ReadDSN != "" {
		check(c.Cache.Feed, "cache.feed", "want true with postgres.read_dsn: the change feed sets the replica's read floor")
	}
	if c.Cache.Feed {
		check(c.Cache.FeedPoll > 0, "cache.feed_poll", "want > 0")
		check(c.Cache.CoherenceBound > c.Cache.FeedPoll, "cache.coherence_bound",
			fmt.Sprintf("want > cache.feed_poll (%s), got %s", c.Cache.FeedPoll, c.Cache.CoherenceBound))
		check(c.Cache.FeedRetention >= 10*c.Cache.CoherenceBound, "cache.feed_retention",
			fmt.Sprintf("want >= 10 x cache.coherence_bound (%s), got %s", 10*c.Cache.CoherenceBound, c.Cache.FeedRetention))
	}
	check(c.Pipeline.BatchSize >= 1 && c.Pipeline.BatchSize <= 100000, "pipeline.batch_size", "want 1..100000")
	check(c.Pipeline.BatchBytes >= 1024, "pipeline.batch_bytes", "want >= 1024")
	check(c.Pipeline.BatchLinger >= 0, "pipeline.batch_linger", "want >= 0 (0: adaptive batching)")
	check(c.Pipeline.Writers >= 1 && c.Pipeline.Writers <= 64, "pipeline.writers", "want 1..64")
	if c.Pipeline.Writers >= 1 {
		check(c.Postgres.PoolSize > c.Pipeline.Writers, "postgres.pool_size",
			fmt.Sprintf("want > pipeline.writers (%d): every writer holds a connection and the API needs more", c.Pipeline.Writers))
	}
	check(c.Pipeline.QueueCapacity >= 1, "pipeline.queue_capacity", "want >= 1")
	check(c.Pipeline.BatchQueueCapacity >= 1, "pipeline.batch_queue_capacity", "want >= 1")
	check(c.Pipeline.CommitInterval > 0, "pipeline.commit_interval", "want > 0")
	check(c.Pipeline.CommitStallBound > 0, "pipeline.commit_stall_bound", "want > 0")
	check(c.Pipeline.MaxMessageBytes >= 1024, "pipeline.max_message_bytes", "want >= 1024")
	check(c.Pipeline.MaxInFlightBytes >= 1<<20, "pipeline.max_inflight_bytes", "want >= 1048576")
	check(c.Pipeline.RetryMin > 0, "pipeline.retry_min", "want > 0")
	check(c.Pipeline.RetryMax >= c.Pipeline.RetryMin, "pipeline.retry_max", "want >= pipeline.retry_min")
	check(c.Pipeline.TombstoneRetention >= 0, "pipeline.tombstone_retention", "want >= 0 (0 keeps tombstones forever)")
	check(c.Pipeline.TombstonePurgeInterval > 0, "pipeline.tombstone_purge_interval", "want > 0")
	check(c.Pipeline.ShutdownTimeout > 0, "pipeline.shutdown_timeout", "want > 0")
	check(oneOf(c.Log.Level, "debug", "info", "warn", "error"), "log.level", fmt.Sprintf("want debug, info, warn or error, got %q", c.Log.Level))
	check(oneOf(c.Log.Format, "json", "text"), "log.format", fmt.Sprintf("want json or text, got %q", c.Log.Format))
	check(oneOf(c.Tracing.Exporter, "none", "otlp-grpc", "otlp-http"), "tracing.exporter", fmt.Sprintf("want none, otlp-grpc or otlp-http, got %q", c.Tracing.Exporter))
	check(c.Tracing.Exporter == "none" || c.Tracing.Endpoint != "", "tracing.endpoint", "required when tracing.exporter is not none")
	check(c.Tracing.SampleRatio >= 0 && c.Tracing.SampleRatio <= 1, "tracing.sample_ratio", "want 0..1")
	if e := c.Tracing.Endpoint; strings.Contains(e, "://") {
		u, err := url.Parse(e)
		check(err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "", "tracing.endpoint",
			fmt.Sprintf("want https://host:port, http://host:port or host:port, got %q", e))
	}
	check(c.Tracing.CAFile == "" || readable(c.Tracing.CAFile), "tracing.ca_file", fmt.Sprintf("cannot read %q", c.Tracing.CAFile))
	check(c.Tracing.CAFile == "" || strings.HasPrefix(c.Tracing.Endpoint, "https://"), "tracing.ca_file", "only with an https:// tracing.endpoint")
	c.validateKafkaSecurity(check)
	if first == nil {
		first = c.validateKafkaProperties()
	}
	return first
}

// validateKafkaProperties checks the pass-through properties against
// librdkafka on the maps the service builds its clients from
// (kafkaedge.CheckProperties) and names the key of the first one refused, the
// consumer's first, or of the section when only some together are refused.
func (c *Config) validateKafkaProperties() error {
	err := kafkaedge.CheckProperties(c.Kafka, c.API.AppendTimeout)
	var pe *kafkaedge.PropertyError
	if !errors.As(err, &pe) {
		if err != nil {
			return &Error{Key: "kafka", Reason: err.Error()}
		}
		return nil
	}
	key := "kafka." + string(pe.Kind)
	if pe.Property != "" {
		key += "." + pe.Property
	}
	return &Error{Key: key, Reason: pe.Reason}
}

// RequireDSN returns an *Error when postgres.dsn is empty (serve needs a database).
func (c Config) RequireDSN() error {
	if c.Postgres.DSN == "" {
		return &Error{Key: "postgres.dsn", Reason: "required: set it to postgres://user:pass@host:port/db?sslmode=disable (or run `go run ./app dev`, which starts its own PostgreSQL)"}
	}
	return nil
}

// BrokerList returns kafka.brokers split on commas.
func (c Config) BrokerList() []string { return splitList(c.Kafka.Brokers) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func validBrokers(s string) bool {
	list := splitList(s)
	if len(list) == 0 {
		return false
	}
	for _, b := range list {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" || port == "" {
			return false
		}
	}
	return true
}

func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func oneOf(s string, set ...string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}

// validateKafkaSecurity checks the kafka.security_protocol, sasl_* and ssl_*
// settings together.
func (c *Config) validateKafkaSecurity(check func(ok bool, key, reason string)) {
	k := c.Kafka
	proto := strings.ToLower(k.SecurityProtocol)
	check(oneOf(proto, "", "plaintext", "ssl", "sasl_plaintext", "sasl_ssl"), "kafka.security_protocol",
		fmt.Sprintf("want plaintext, ssl, sasl_plaintext or sasl_ssl, got %q", k.SecurityProtocol))
	sasl := strings.HasPrefix(proto, "sasl_")
	tls := proto == "ssl" || proto == "sasl_ssl"
	if sasl {
		check(oneOf(k.SASLMechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "kafka.sasl_mechanism",
			fmt.Sprintf("want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with %s, got %q", proto, k.SASLMechanism))
		check(k.SASLUsername != "", "kafka.sasl_username", "required with "+proto)
		check(k.SASLPassword != "", "kafka.sasl_password", "required with "+proto)
	} else {
		check(k.SASLMechanism == "" && k.SASLUsername == "" && k.SASLPassword == "", "kafka.sasl_mechanism",
			"sasl_* settings need kafka.security_protocol sasl_plaintext or sasl_ssl")
	}
	for _, f := range []struct{ key, path string }{
		{"kafka.ssl_ca_location", k.SSLCALocation},
		{"kafka.ssl_certificate_location", k.SSLCertificateLocation},
		{"kafka.ssl_key_location", k.SSLKeyLocation},
	} {
		if f.path == "" {
			continue
		}
		check(tls, f.key, "ssl_* settings need kafka.security_protocol ssl or sasl_ssl")
		check(readable(f.path), f.key, fmt.Sprintf("cannot read %q", f.path))
	}
	check((k.SSLCertificateLocation == "") == (k.SSLKeyLocation == ""), "kafka.ssl_key_location",
		"kafka.ssl_certificate_location and kafka.ssl_key_location go together (mutual TLS)")
	check(k.SSLKeyPassword == "" || k.SSLKeyLocation != "", "kafka.ssl_key_password", "only with kafka.ssl_key_location")
}

// readable reports whether the file at path can be opened for reading.
func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}
