// Package kafkaedge is the pipeline's Kafka edge, on confluent-kafka-go v2
// (librdkafka). It reads in one direction:
//
//   - Source polls the input topic as a member of the consumer group, hands out
//     each record as a Message with its Ack, and applies backpressure
//     (Pause/Resume after a sustained stall);
//   - each Ack ends in one of two ways, Done (stored) or DeadLetter (rejected,
//     with the Failure that says why);
//   - Committer alone owns what follows: the per-partition watermarks of ended
//     messages, the held dead letters, the transactional producer that writes
//     them, and every offset commit.
//
// Offsets: enable.auto.commit=false; the committer commits, per owned partition,
// the contiguous prefix of ended messages, after batches, on a timer, on revoke
// and on close. A commit whose range holds dead letters is one Kafka transaction
// (the dead letters, then the offsets with SendOffsetsToTransaction), so each bad
// message lands in the DLQ exactly once; other commits are plain consumer commits.
//
// Every Kafka client of the service is built here (the consumer, the
// transactional producer, the admin client, and the producer and reader of the
// produce and dlq tools), and so are the DLQ header names and the size limits.
// Kafka's own types stay inside the package.
package kafkaedge

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Dead-letter header names (part of the outside contract: DLQ readers rely on them).
const (
	HeaderError           = "x-error"
	HeaderErrorClass      = "x-error-class"
	HeaderStage           = "x-stage"
	HeaderSourceTopic     = "x-source-topic"
	HeaderSourcePartition = "x-source-partition"
	HeaderSourceOffset    = "x-source-offset"
	HeaderAttempts        = "x-attempts"
	// HeaderSourceTimestamp is the original record's timestamp (Unix ms).
	HeaderSourceTimestamp = "x-source-timestamp"
	// HeaderReplayedFrom marks a record re-published by a DLQ replay: "topic/partition@offset".
	HeaderReplayedFrom = "x-replayed-from"
	// HeaderWriteID marks a record appended by an API write (PUT, DELETE), so
	// that the instance which applies it can answer the waiting request.
	HeaderWriteID = "x-write-id"
	// HeaderValueTruncated marks a dead letter whose value was cut so that the
	// DLQ topic takes it (see fitLetter); it holds the original value's size in
	// bytes. The original record stays at its x-source-* position while the
	// input topic's retention keeps it; a DLQ replay does not re-publish it.
	HeaderValueTruncated = "x-value-truncated"
	// HeaderValueSHA256 is the hex SHA-256 of a truncated letter's original value.
	HeaderValueSHA256 = "x-value-sha256"
)

// MaxRecordBytes is the largest record the service's producers send
// (message.max.bytes) and the max.message.bytes of the DLQ topic it creates:
// dead letters include oversized messages.
const MaxRecordBytes = 16 << 20

// IsServiceHeader reports whether a header name is one the service adds (x-*)
// rather than one of the original record's.
func IsServiceHeader(name string) bool { return strings.HasPrefix(name, "x-") }

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one Kafka record: where it is and what it holds.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Header returns the value of the first header called name, "" when there is none.
func (r *Record) Header(name string) string {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// Origin returns the position r had when it was first consumed and its
// timestamp: for a replayed dead letter (x-source-topic naming r's topic, with a
// valid x-source-partition and x-source-offset), the positions in those headers
// and x-source-timestamp (r's own timestamp when absent); for any other record,
// its own position and timestamp.
func (r *Record) Origin() (partition int32, offset int64, timestamp time.Time) {
	partition, offset, timestamp = r.Partition, r.Offset, r.Timestamp
	if len(r.Headers) == 0 || r.Header(HeaderSourceTopic) != r.Topic {
		return partition, offset, timestamp
	}
	p, perr := strconv.ParseInt(r.Header(HeaderSourcePartition), 10, 32)
	o, oerr := strconv.ParseInt(r.Header(HeaderSourceOffset), 10, 64)
	if perr != nil || oerr != nil || p < 0 || o < 0 {
		return partition, offset, timestamp
	}
	if ms, err := strconv.ParseInt(r.Header(HeaderSourceTimestamp), 10, 64); err == nil {
		timestamp = time.UnixMilli(ms)
	}
	return int32(p), o, timestamp
}

// Message is one fetched record with its Ack, which travels with it through the
// stages: every message ends with Ack.Done or Ack.DeadLetter.
type Message struct {
	Record
	Ack *Ack
}

// Failure says why a message is dead-lettered.
type Failure struct {
	Class    string // decode, validation, data, ...
	Stage    string // the stage that gave up on it
	Reason   string
	Attempts int
}

// fromKafka converts a fetched librdkafka message.
func fromKafka(e *kafka.Message) Record {
	r := Record{
		Partition: e.TopicPartition.Partition,
		Offset:    int64(e.TopicPartition.Offset),
		Key:       e.Key,
		Value:     e.Value,
		Timestamp: e.Timestamp,
	}
	if e.TopicPartition.Topic != nil {
		r.Topic = *e.TopicPartition.Topic
	}
	if len(e.Headers) > 0 {
		r.Headers = make([]Header, len(e.Headers))
		for i, h := range e.Headers {
			r.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return r
}

// toKafka builds a record to produce to topic.
func toKafka(topic string, key, value []byte, headers []Header) *kafka.Message {
	m := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            key,
		Value:          value,
	}
	if len(headers) > 0 {
		m.Headers = make([]kafka.Header, len(headers))
		for i, h := range headers {
			m.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m
}

// deadLetter builds the dead letter of r: its key and value unchanged, its
// original headers (not the x-* ones of an earlier dead letter or replay) plus
// the x-* headers describing f. The x-source-* headers name r's Origin: a
// replayed letter that fails again keeps its first position, which is its
// version.
func deadLetter(dlqTopic string, r *Record, f Failure) *kafka.Message {
	hdrs := make([]Header, 0, len(r.Headers)+8)
	for _, h := range r.Headers {
		if !IsServiceHeader(h.Key) {
			hdrs = append(hdrs, h)
		}
	}
	part, off, ts := r.Origin()
	hdrs = append(hdrs,
		Header{HeaderError, []byte(f.Reason)},
		Header{HeaderErrorClass, []byte(f.Class)},
		Header{HeaderStage, []byte(f.Stage)},
		Header{HeaderSourceTopic, []byte(r.Topic)},
		Header{HeaderSourcePartition, []byte(strconv.FormatInt(int64(part), 10))},
		Header{HeaderSourceOffset, []byte(strconv.FormatInt(off, 10))},
		Header{HeaderSourceTimestamp, []byte(strconv.FormatInt(ts.UnixMilli(), 10))},
		Header{HeaderAttempts, []byte(strconv.Itoa(max(f.Attempts, 1)))},
	)
	m := toKafka(dlqTopic, r.Key, r.Value, hdrs)
	m.Opaque = letterRef{partition: r.Partition, offset: r.Offset}
	return m
}

// Replayable reports whether the dead letter r can be replayed: not one whose
// value was cut to fit the DLQ topic (replaying the prefix would publish a
// different order, and an empty value would be a tombstone), nor one the client
// could not read (class fetch: what it holds is not the record). why says where
// the original is.
func Replayable(r *Record) (ok bool, why string) {
	src := r.Header(HeaderSourceTopic) + "/" + r.Header(HeaderSourcePartition) + "@" + r.Header(HeaderSourceOffset)
	if size := r.Header(HeaderValueTruncated); size != "" {
		return false, "its value was cut from " + size + " bytes to fit the DLQ topic; the original is at " + src + " while the topic's retention keeps it"
	}
	if r.Header(HeaderErrorClass) == ClassFetch {
		return false, "the client could not read the original record at " + src
	}
	return true, ""
}

// Replay returns what a DLQ replay re-publishes for the dead letter r: the
// original key and value, the original (non-x-*) headers, the x-source-topic,
// -partition, -offset and -timestamp headers (the record's Origin, hence its
// version: a replayed old version never overwrites a newer one), and
// HeaderReplayedFrom naming r's place in the DLQ; and the topic to publish to
// (r's x-source-topic, else fallback).
func Replay(r *Record, fallback string) (topic string, key, value []byte, headers []Header) {
	for _, h := range r.Headers {
		switch {
		case !IsServiceHeader(h.Key),
			h.Key == HeaderSourceTopic, h.Key == HeaderSourcePartition,
			h.Key == HeaderSourceOffset, h.Key == HeaderSourceTimestamp:
			headers = append(headers, h)
		}
	}
	from := r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "@" + strconv.FormatInt(r.Offset, 10)
	headers = append(headers, Header{HeaderReplayedFrom, []byte(from)})
	topic = r.Header(HeaderSourceTopic)
	if topic == "" {
		topic = fallback
	}
	return topic, r.Key, r.Value, headers
}

// Sizes a truncated dead letter keeps (fitLetter): a first cut keeps a prefix of
// the value, enough to recognise the message; a letter still refused keeps no
// value and none of the original headers.
const (
	letterKeepValue = 64 << 10
	letterKeepKey   = 1 << 10
)

// fitLetter returns a smaller copy of the dead letter m, for a DLQ topic that
// refused it as too large (a topic not created by the service keeps the broker's
// ~1 MiB limit, and a near-limit message plus the x-* headers exceeds it). The
// first cut keeps letterKeepValue bytes of the value and letterKeepKey of the
// key and adds HeaderValueTruncated and HeaderValueSHA256; a letter already cut
// loses the rest of its value and the original headers. The x-* headers, hence the reason and the source position, always stay.
// ok is false when there is nothing left to cut.
func fitLetter(m *kafka.Message) (fitted *kafka.Message, ok bool) {
	cut := false
	for _, h := range m.Headers {
		if h.Key == HeaderValueTruncated {
			cut = true
		}
	}
	out := &kafka.Message{TopicPartition: m.TopicPartition, Key: m.Key, Opaque: m.Opaque}
	out.TopicPartition.Error = nil
	if !cut {
		if len(m.Value) <= letterKeepValue && len(m.Key) <= letterKeepKey {
			// A small letter is never cut: refused "too large", it shared a
			// request with a large one (or the topic takes less than
			// letterKeepValue: the commits stall, visibly, for an operator).
			return m, false
		}
		sum := sha256.Sum256(m.Value)
		out.Key = out.Key[:min(len(out.Key), letterKeepKey)]
		out.Value = m.Value[:min(len(m.Value), letterKeepValue)]
		out.Headers = append(append(out.Headers, m.Headers...),
			kafka.Header{Key: HeaderValueTruncated, Value: []byte(strconv.Itoa(len(m.Value)))},
			kafka.Header{Key: HeaderValueSHA256, Value: []byte(hex.EncodeToString(sum[:]))})
		return out, true
	}
	if len(m.Value) == 0 && !hasOriginalHeaders(m) {
		return m, false
	}
	out.Value = []byte{}
	for _, h := range m.Headers {
		if IsServiceHeader(h.Key) {
			out.Headers = append(out.Headers, h)
		}
	}
	return out, true
}

func hasOriginalHeaders(m *kafka.Message) bool {
	for _, h := range m.Headers {
		if !IsServiceHeader(h.Key) {
			return true
		}
	}
	return false
}
