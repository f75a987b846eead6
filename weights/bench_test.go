package weights

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
)

// BenchmarkManifest hashes a 1 GB model with 1 and 2 workers; bytes/s is
// the hashing throughput (the file is in the page cache after the first
// round, so this measures BLAKE3 and the copy, not the disk).
func BenchmarkManifest(b *testing.B) {
	path := filepath.Join(b.TempDir(), "zero.gguf")
	testenv.WriteZeroModel(b, path, 1<<30)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("size=1GB/workers=%d", workers), func(b *testing.B) {
			b.SetBytes(st.Size())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ComputeManifest(path, workers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
