package relay

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps enforces the layering of DESIGN.md: relay runs shards (and so
// the kernels) but depends on nothing at its own level or above it.
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool:", err)
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(out), "github.com/stratanet/strata/shard\n") {
		t.Fatalf("go list -deps misses shard:\n%s", out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{"ledger", "bench", "cmd"} {
			banned = "github.com/stratanet/strata/" + banned
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("relay depends on %s", dep)
			}
		}
	}
}
