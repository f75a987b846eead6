package kernels_test

import (
	"fmt"
	"testing"

	"github.com/stratanet/strata/internal/anonmem"
	"github.com/stratanet/strata/kernels"
)

// streamBytes is at least how many bytes of distinct layers
// BenchmarkMatVecStream cycles through: 1 GiB, far beyond any L3 cache
// (a VM on a large server may report hundreds of MiB; with 100 MB, four
// Q4_0 layers, the benchmark ran half from cache there), so every weight
// comes from memory as in real decoding.
const streamBytes = 1 << 30

// BenchmarkMatVecStream is decode's matrix-vector products over every
// matrix of as many layers as make streamBytes, weights read from memory
// (not cache);
// bytes/s counts the weights read, to be set against
// bench.BenchmarkReadBandwidth.
func BenchmarkMatVecStream(b *testing.B) {
	for _, typ := range benchTypes {
		for _, threads := range benchThreads {
			b.Run(fmt.Sprintf("%s/size=1GiB/threads=%d", typ, threads), func(b *testing.B) {
				e := benchEngine(b, threads)
				var ms []kernels.Matrix
				var bytes int64
				for bytes < streamBytes {
					for _, l := range layer {
						proto := benchMatrix(b, typ, l.rows, l.cols)
						m := proto
						// A distinct copy per layer, in anonymous memory
						// advised for huge pages as a shard's weights are.
						data, free, err := anonmem.Alloc(len(proto.Data))
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(free)
						m.Data = data
						copy(m.Data, proto.Data)
						ms = append(ms, m)
						bytes += int64(len(m.Data))
					}
				}
				xs := map[int][]float32{}
				dsts := map[int][]float32{}
				for _, m := range ms {
					if xs[m.Cols] == nil {
						xs[m.Cols] = benchActivations(m.Cols)
					}
					if dsts[m.Rows] == nil {
						dsts[m.Rows] = make([]float32, m.Rows)
					}
					if err := e.MatMul(dsts[m.Rows], m, xs[m.Cols], 1); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(bytes)
				b.ReportAllocs()
				for b.Loop() {
					for _, m := range ms {
						if err := e.MatMul(dsts[m.Rows], m, xs[m.Cols], 1); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
