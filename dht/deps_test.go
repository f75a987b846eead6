package dht

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps networking code away from the compute packages.
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/stratanet/strata/kernels", "github.com/stratanet/strata/shard"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("dht depends on %s", dep)
			}
		}
	}
}
