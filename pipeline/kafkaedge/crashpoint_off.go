//go:build !faultinject

package kafkaedge

// crashPoint is a no-op in normal builds (see crashpoint_on.go).
func crashPoint(string) {}
