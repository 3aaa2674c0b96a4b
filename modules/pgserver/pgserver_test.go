package pgserver

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestFindBinHoldsTheServerPrograms(t *testing.T) {
	bin, err := FindBin()
	if errors.Is(err, ErrNotFound) {
		t.Skip("no PostgreSQL installed here")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range required {
		if !isExecutable(filepath.Join(bin, name)) {
			t.Errorf("%s lacks %s", bin, name)
		}
	}
}

func TestVersionOfOrdersInstallations(t *testing.T) {
	if a, b := versionOf("/usr/lib/postgresql/9.6/bin"), versionOf("/usr/lib/postgresql/15/bin"); a >= b {
		t.Fatalf("9.6 sorts after 15: %v >= %v", a, b)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
}
