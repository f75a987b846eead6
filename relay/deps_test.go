package relay

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps enforces the layering of DESIGN.md: networking packages never
// import kernels/ (nor shard/, which does), directly or not.
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool:", err)
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(out), "github.com/stratanet/strata/weights/quant\n") {
		t.Fatalf("go list -deps misses weights/quant:\n%s", out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{"github.com/stratanet/strata/kernels", "github.com/stratanet/strata/shard"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("relay depends on %s", dep)
			}
		}
	}
}
