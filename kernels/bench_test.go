package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/quant"
)

// The benchmarks run the weights of one transformer layer shaped like
// TinyLlama-1.1B (dim 2048, ffn 5632, 32 heads, 4 KV heads of 64) on the
// path that $STRATA_KERNELS selects (the best one when unset).

// layer is one layer's matrices, rows×cols (output×input).
var layer = []struct {
	name       string
	rows, cols int
}{
	{"attn_q", 2048, 2048},
	{"attn_k", 256, 2048},
	{"attn_v", 256, 2048},
	{"attn_output", 2048, 2048},
	{"ffn_gate", 5632, 2048},
	{"ffn_up", 5632, 2048},
	{"ffn_down", 2048, 5632},
}

// matVecShapes are the layer's distinct shapes.
var matVecShapes = [][2]int{{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}}

var benchTypes = []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K, quant.F16}

var benchThreads = []int{1, 2}

// benchMatrices caches generated weights across benchmarks.
var benchMatrices sync.Map // [3]int{type, rows, cols} → kernels.Matrix

// benchMatrix returns rows×cols random weights of typ: 64 distinct
// gaussian rows (σ = 0.02) quantized with quant.Quantize, repeated to fill
// the matrix (quantizing every row would dominate the benchmark's run
// time; speed does not depend on the values).
func benchMatrix(b *testing.B, typ quant.Type, rows, cols int) kernels.Matrix {
	key := [3]int{int(typ), rows, cols}
	if m, ok := benchMatrices.Load(key); ok {
		return m.(kernels.Matrix)
	}
	const distinct = 64
	r := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	vals := make([]float32, distinct*cols)
	for i := range vals {
		vals[i] = float32(0.02 * r.NormFloat64())
	}
	rb, err := typ.RowSize(int64(cols))
	if err != nil {
		b.Fatal(err)
	}
	src := make([]byte, distinct*int(rb))
	if err := quant.Quantize(typ, src, vals); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, rows*int(rb))
	for off := 0; off < len(data); off += len(src) {
		copy(data[off:], src)
	}
	m, err := kernels.NewMatrix(typ, rows, cols, data)
	if err != nil {
		b.Fatal(err)
	}
	benchMatrices.Store(key, m)
	return m
}

func benchActivations(n int) []float32 {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func benchEngine(b *testing.B, threads int) *kernels.Engine {
	p, err := kernels.PathFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	pool := kernels.NewPool(threads)
	b.Cleanup(pool.Close)
	e, err := kernels.NewEngine(p, pool)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkMatVec is one token against one matrix (decode); bytes/s counts
// the weights read.
func BenchmarkMatVec(b *testing.B) {
	for _, typ := range benchTypes {
		for _, sh := range matVecShapes {
			rows, cols := sh[0], sh[1]
			for _, threads := range benchThreads {
				b.Run(fmt.Sprintf("%s/%dx%d/threads=%d", typ, rows, cols, threads), func(b *testing.B) {
					m := benchMatrix(b, typ, rows, cols)
					e := benchEngine(b, threads)
					x, dst := benchActivations(cols), make([]float32, rows)
					if err := e.MatMul(dst, m, x, 1); err != nil { // size the scratch
						b.Fatal(err)
					}
					b.SetBytes(int64(len(m.Data)))
					b.ReportAllocs()
					for b.Loop() {
						if err := e.MatMul(dst, m, x, 1); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkMatMul is a prefill of tok tokens through every matrix of the
// layer; it reports GFLOP/s (2 per weight per token).
func BenchmarkMatMul(b *testing.B) {
	const tok = 128
	for _, typ := range benchTypes {
		for _, threads := range benchThreads {
			b.Run(fmt.Sprintf("%s/tok=%d/threads=%d", typ, tok, threads), func(b *testing.B) {
				e := benchEngine(b, threads)
				ms := make([]kernels.Matrix, len(layer))
				dsts := make([][]float32, len(layer))
				xs := map[int][]float32{}
				var flops float64
				for i, l := range layer {
					ms[i] = benchMatrix(b, typ, l.rows, l.cols)
					dsts[i] = make([]float32, tok*l.rows)
					if xs[l.cols] == nil {
						xs[l.cols] = benchActivations(tok * l.cols)
					}
					flops += 2 * float64(l.rows) * float64(l.cols) * tok
					// Size the engine's scratch with a cheap one-row product.
					one := kernels.Matrix{Type: typ, Rows: 1, Cols: l.cols, Data: ms[i].Data[:ms[i].RowBytes()]}
					if err := e.MatMul(dsts[i][:tok], one, xs[l.cols], tok); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					for i, m := range ms {
						if err := e.MatMul(dsts[i], m, xs[m.Cols], tok); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkMatMulSmall is a prefill of a few tokens through one 2048×2048
// matrix on one thread: where the batch kernels (MinTokens) start to pay.
func BenchmarkMatMulSmall(b *testing.B) {
	const rows, cols = 2048, 2048
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K} {
		for _, tok := range []int{4, 8, 12, 16, 32} {
			b.Run(fmt.Sprintf("%s/%dx%d/tok=%d", typ, rows, cols, tok), func(b *testing.B) {
				m := benchMatrix(b, typ, rows, cols)
				e := benchEngine(b, 1)
				x, dst := benchActivations(tok*cols), make([]float32, tok*rows)
				if err := e.MatMul(dst, m, x, tok); err != nil { // size the scratch
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := e.MatMul(dst, m, x, tok); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(rows*cols*tok)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
