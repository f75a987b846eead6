package kernels_test

import (
	"fmt"
	"testing"

	"github.com/stratanet/strata/kernels"
)

// streamLayers is the number of distinct layers BenchmarkMatVecStream
// cycles through: 4 layers of a 1.1B model are 100 MB even in Q4_0, three
// times this machine's 32 MiB L3 cache, so every weight comes from memory
// as in real decoding.
const streamLayers = 4

// BenchmarkMatVecStream is decode's matrix-vector products over every
// matrix of streamLayers layers, weights read from memory (not cache);
// bytes/s counts the weights read, to be set against
// bench.BenchmarkReadBandwidth.
func BenchmarkMatVecStream(b *testing.B) {
	for _, typ := range benchTypes {
		for _, threads := range benchThreads {
			b.Run(fmt.Sprintf("%s/layers=%d/threads=%d", typ, streamLayers, threads), func(b *testing.B) {
				e := benchEngine(b, threads)
				var ms []kernels.Matrix
				var bytes int64
				for range streamLayers {
					for _, l := range layer {
						proto := benchMatrix(b, typ, l.rows, l.cols)
						m := proto
						m.Data = append([]byte(nil), proto.Data...) // a distinct copy per layer
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
