package gguf_test

import (
	"path/filepath"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/weights/gguf"
)

// BenchmarkOpen/size=1GB opens a 1 GB file: a map and a header parse, so
// well under a millisecond, independent of the data size.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "zero.gguf")
	testenv.WriteZeroModel(b, path, 1<<30)
	b.Run("size=1GB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := gguf.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
