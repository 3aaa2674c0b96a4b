package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The OTLP endpoint's scheme picks TLS: https is TLS (verified), http and a
// bare host:port are plain text.
func TestOTLPTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		tls  bool
	}{
		{"https://collector:4317", "collector:4317", true},
		{"https://collector:4318/", "collector:4318", true},
		{"http://collector:4318", "collector:4318", false},
		{"collector:4317", "collector:4317", false},
	} {
		host, useTLS := otlpTarget(tc.in)
		if host != tc.host || useTLS != tc.tls {
			t.Errorf("%s: %s tls=%v, want %s tls=%v", tc.in, host, useTLS, tc.host, tc.tls)
		}
	}
	if conf, err := otlpTLS(""); err != nil || conf.RootCAs != nil || conf.InsecureSkipVerify {
		t.Errorf("no ca_file: %+v %v, want the system's CAs, verified", conf, err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := otlpTLS(bad); err == nil {
		t.Error("a ca_file without a PEM certificate was accepted")
	}
}
