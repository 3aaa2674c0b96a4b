package kafkaedge

import (
	"context"
	"log/slog"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// forwardLogs routes librdkafka's log lines (syslog levels) to log, instead of
// librdkafka printing them on stderr. It adds the settings to cm and returns the
// function that stops the forwarder; call it after the client is closed.
func forwardLogs(cm kafka.ConfigMap, log *slog.Logger) (stop func()) {
	ch := make(chan kafka.LogEvent, 256)
	done := make(chan struct{})
	cm["go.logs.channel.enable"] = true
	cm["go.logs.channel"] = ch
	go func() {
		for {
			select {
			case e := <-ch:
				log.Log(context.Background(), syslogLevel(e.Level), "librdkafka", "client", e.Name, "tag", e.Tag, "message", e.Message)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// syslogLevel maps a syslog severity to slog; informational chatter is Debug.
func syslogLevel(l int) slog.Level {
	switch {
	case l <= 3:
		return slog.LevelError
	case l == 4:
		return slog.LevelWarn
	case l == 5:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
