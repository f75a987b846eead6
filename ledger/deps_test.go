package ledger

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: the ledger stands beside relay and dht, not on them (see
// ../shared/DESIGN.md): it takes a libp2p host, never a relay session.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, banned := range []string{"relay", "dht", "bench", "cmd", "shard", "kernels"} {
			banned = "github.com/stratanet/strata/" + banned
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("ledger depends on %s", dep)
			}
		}
	}
}
