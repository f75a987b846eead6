package testenv

import (
	"fmt"
	"os"
	"testing"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// WriteZeroModel writes a GGUF file of about size bytes: Q8_0 matrices of
// zeros, 2048 wide, named like a model's blocks. It is for benchmarks of
// opening and hashing, where the values do not matter.
func WriteZeroModel(tb testing.TB, path string, size int64) {
	tb.Helper()
	const dim = 2048
	rowBytes := int64(dim / 32 * 34)
	var ts []gguf.TensorInfo
	var total int64
	for i := 0; total < size; i++ {
		rows := min((size-total)/rowBytes+1, 5632)
		ts = append(ts, gguf.TensorInfo{Name: fmt.Sprintf("blk.%d.ffn_up.weight", i), Type: quant.Q8_0, Dims: []int64{dim, rows}})
		total += rows * rowBytes
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	md := &gguf.Metadata{}
	md.Set("general.architecture", gguf.MustValue("llama"))
	w, err := gguf.NewWriter(f, md, ts)
	if err != nil {
		tb.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for t := w.Next(); t != nil; t = w.Next() {
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
