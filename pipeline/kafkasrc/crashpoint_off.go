//go:build !faultinject

package kafkasrc

// crashPoint is a no-op in normal builds (see crashpoint_on.go).
func crashPoint(string) {}
