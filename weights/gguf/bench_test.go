package gguf

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// WriteZeroModel writes a GGUF file of about size bytes (Q8_0 tensors of
// zeros laid out like a model's blocks), for benchmarks where the values do
// not matter.
func writeZeroModel(tb testing.TB, path string, size int64) {
	tb.Helper()
	const dim = 2048
	rowBytes := int64(dim / 32 * 34)
	var ts []TensorInfo
	var total int64
	for i := 0; total < size; i++ {
		rows := min((size-total)/rowBytes+1, 5632)
		ts = append(ts, TensorInfo{Name: fmt.Sprintf("blk.%d.ffn_up.weight", i), Type: quant.Q8_0, Dims: []int64{dim, rows}})
		total += rows * rowBytes
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	md := &Metadata{}
	md.Set("general.architecture", MustValue("llama"))
	w, err := NewWriter(f, md, ts)
	if err != nil {
		tb.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for w.Next() != nil {
		t := w.Next()
		for left := t.Size; left > 0; {
			n := min(left, int64(len(zeros)))
			if _, err := w.Write(zeros[:n]); err != nil {
				tb.Fatal(err)
			}
			left -= n
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkOpen/size=1GB opens a 1 GB file: a map and a header parse, so
// milliseconds at most, independent of the data size.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "zero.gguf")
	writeZeroModel(b, path, 1<<30)
	b.Run("size=1GB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
