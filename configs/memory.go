package configs

// MemoryNeed is the memory the service needs (a container's memory limit): the
// cache bound, the orders in flight (pipeline.max_inflight_bytes counts their
// message bytes; decoded, in COPY text and in cache JSON they take up to
// InflightExpansion times that) and MemoryBase: librdkafka's queues (C memory,
// outside the Go limit), the runtime's own memory and the heap's overshoot past
// its soft limit. With the defaults: 256 + 128 + 96 = 480 MiB.
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
	// MemoryBase is the part of MemoryNeed outside the Go soft limit.
	MemoryBase = 96 << 20
	// InflightExpansion is how many times its message bytes an order in flight
	// may take in memory.
	InflightExpansion = 8
)
