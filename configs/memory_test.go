package configs

import "testing"

func TestMemoryNeed(t *testing.T) {
	cases := []struct {
		name                string
		cache, inflight     int64
		wantGoLimit, wantMB int64
	}{
		{"defaults", 256 << 20, 16 << 20, 384 << 20, 488},
		{"small cache", 32 << 20, 16 << 20, 160 << 20, 264},
		{"large in-flight bound", 256 << 20, 64 << 20, 768 << 20, 872},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Cache.MaxBytes, c.Pipeline.MaxInFlightBytes = tc.cache, tc.inflight
			if got := c.GoMemoryLimit(); got != tc.wantGoLimit {
				t.Errorf("GoMemoryLimit = %d MiB, want %d MiB", got>>20, tc.wantGoLimit>>20)
			}
			if got := c.MemoryNeed(); got != tc.wantMB<<20 {
				t.Errorf("MemoryNeed = %d MiB, want %d MiB", got>>20, tc.wantMB)
			}
		})
	}
	if d := Default(); d.MemoryNeed() != 488<<20 {
		t.Errorf("default memory need %d MiB, want 488 MiB (README, configs/k8s)", d.MemoryNeed()>>20)
	}
}
