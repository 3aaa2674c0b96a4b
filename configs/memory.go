package configs

// MemoryNeed is the memory the service needs (a container's memory limit): the
// cache bound, the orders in flight (pipeline.max_inflight_bytes counts their
// message bytes; decoded, in COPY text and in cache JSON they take up to
// InflightExpansion times that) and MemoryBase: librdkafka's queues (C memory,
// outside the Go limit), the runtime's own memory, the heap's overshoot past
// its soft limit and a Kafka view's read (KafkaViewMemory). With the defaults:
// 256 + 128 + 104 = 488 MiB.
// TestLargeOrdersBacklogStaysUnderTheMemoryLimit holds a backlog of ~800 KiB
// orders under it.
func (c Config) MemoryNeed() int64 {
	return c.GoMemoryLimit() + MemoryBase
}

// GoMemoryLimit is the Go runtime's soft memory limit that serve sets (unless
// GOMEMLIMIT is set): the cache and the orders in flight. The heap grows up to
// it before the collector works hard, so the rest of MemoryNeed must stay
// outside it.
func (c Config) GoMemoryLimit() int64 {
	return c.Cache.MaxBytes + InflightExpansion*c.Pipeline.MaxInFlightBytes
}

const (
	// MemoryBase is the part of MemoryNeed outside the Go soft limit: 96 MiB
	// for librdkafka's queues, the runtime and the heap's overshoot, and
	// KafkaViewMemory.
	MemoryBase = 96<<20 + KafkaViewMemory
	// KafkaViewMemory is what a read of GET /api/v1/dlq holds (the page's
	// dead-letter view, which anyone can ask for): at most 4 MiB of the
	// letters' values (kafkaview.ValueBudget), its consumer's librdkafka
	// buffers (2 x kafkaedge.ReadBufferBytes: prefetch queue and a fetch) and
	// the 200 letters' headers and the record in hand. One read runs at a
	// time, and its answer is dropped a second after it.
	KafkaViewMemory = 8 << 20
	// InflightExpansion is how many times its message bytes an order in flight
	// may take in memory.
	InflightExpansion = 8
)
