package kernels

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// Row kernel benchmarks, generic against assembly paths, at TinyLlama's
// row lengths (dim 2048, ffn 5632). BenchmarkRowDot streams through a
// weight matrix larger than the last-level cache, one row per iteration,
// as a decode step does: its MB/s (weight bytes per second) is the figure
// to compare with the machine's memory bandwidth. BenchmarkRowDotHot
// repeats one row that stays in cache: the kernel's compute ceiling.

var benchRowTypes = []quant.Type{
	quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K, quant.F16, quant.F32, quant.BF16,
	quant.Q5_0, quant.Q4_1, quant.Q5_1, quant.Q5_K,
}

var benchRowCols = []int{2048, 5632}

// benchMatrixBytes is the size of the streamed weight matrix: beyond the
// last-level cache of the machines this runs on.
const benchMatrixBytes = 96 << 20

var (
	benchRandOnce sync.Once
	benchRand     []byte
)

// benchRowWeights returns rows rows of cols weights of typ: random bytes
// with finite fp16 scales (quantized types) or finite values of moderate
// exponent (float types), so that no value takes a slow path.
func benchRowWeights(typ quant.Type, cols, rows int) []byte {
	benchRandOnce.Do(func() {
		r := rand.New(rand.NewPCG(11, 11))
		benchRand = make([]byte, benchMatrixBytes)
		for i := 0; i < len(benchRand); i += 8 {
			binary.LittleEndian.PutUint64(benchRand[i:], r.Uint64())
		}
	})
	rb, _ := typ.RowSize(int64(cols))
	w := make([]byte, int(rb)*rows)
	copy(w, benchRand)
	ts := typ.TypeSize()
	var scales []int
	switch typ {
	case quant.F32:
		for i := 3; i < len(w); i += 4 {
			w[i] = w[i]&0x80 | 0x3e // exponent near 0
		}
		return w
	case quant.F16:
		for i := 1; i < len(w); i += 2 {
			w[i] = w[i]&0x83 | 0x38
		}
		return w
	case quant.BF16:
		for i := 1; i < len(w); i += 2 {
			w[i] = w[i]&0x80 | 0x3f
		}
		return w
	case quant.Q4_1, quant.Q5_1, quant.Q4_K, quant.Q5_K:
		scales = []int{0, 2}
	case quant.Q6_K:
		scales = []int{208}
	default:
		scales = []int{0}
	}
	for b := 0; b+ts <= len(w); b += ts {
		for _, o := range scales {
			w[b+o+1] = w[b+o+1]&0x83 | 0x18 // |scale| in [2^-9, 2^-8)
		}
	}
	return w
}

// benchRowActivation returns a random activation of n values in the Q8
// and, when n allows, Q8K forms, and as float32.
func benchRowActivation(n int) (*Q8, *Q8K, []float32) {
	r := rand.New(rand.NewPCG(12, 12))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	var a Q8
	var k Q8K
	if err := a.Quantize(x); err != nil {
		panic(err)
	}
	if n%Q8KBlock == 0 {
		if err := k.Quantize(x); err != nil {
			panic(err)
		}
	}
	return &a, &k, x
}

// benchRowFunc returns one call of k's kernel for typ on row w.
func benchRowFunc(k *RowKernels, typ quant.Type, a *Q8, ak *Q8K, x []float32) func(w []byte) float32 {
	switch typ {
	case quant.Q4_0:
		return func(w []byte) float32 { return k.Q4_0(w, a.Q, a.D) }
	case quant.Q5_0:
		return func(w []byte) float32 { return k.Q5_0(w, a.Q, a.D) }
	case quant.Q8_0:
		return func(w []byte) float32 { return k.Q8_0(w, a.Q, a.D) }
	case quant.Q4_1:
		return func(w []byte) float32 { return k.Q4_1(w, a.Q, a.D, a.S) }
	case quant.Q5_1:
		return func(w []byte) float32 { return k.Q5_1(w, a.Q, a.D, a.S) }
	case quant.Q4_K:
		return func(w []byte) float32 { return k.Q4_K(w, ak.Q, ak.D, ak.BSums) }
	case quant.Q5_K:
		return func(w []byte) float32 { return k.Q5_K(w, ak.Q, ak.D, ak.BSums) }
	case quant.Q6_K:
		return func(w []byte) float32 { return k.Q6_K(w, ak.Q, ak.D) }
	case quant.F32:
		return func(w []byte) float32 { return k.F32(w, x) }
	case quant.F16:
		return func(w []byte) float32 { return k.F16(w, x) }
	case quant.BF16:
		return func(w []byte) float32 { return k.BF16(w, x) }
	}
	panic("no row kernel for " + typ.String())
}

var benchRowSink float32

func benchRowDot(b *testing.B, hot bool) {
	for _, typ := range benchRowTypes {
		b.Run(typ.String(), func(b *testing.B) {
			for _, p := range []Path{Generic, AVX2, AVX512, AMX} {
				b.Run(p.String(), func(b *testing.B) {
					if !p.Supported() {
						b.Skipf("path %s not supported here", p)
					}
					for _, cols := range benchRowCols {
						b.Run(fmt.Sprintf("cols=%d", cols), func(b *testing.B) {
							rb64, _ := typ.RowSize(int64(cols))
							rb := int(rb64)
							rows := benchMatrixBytes / rb
							if hot {
								rows = 1
							}
							w := benchRowWeights(typ, cols, rows)
							a, ak, x := benchRowActivation(cols)
							f := benchRowFunc(p.Kernels(), typ, a, ak, x)
							b.SetBytes(int64(rb))
							b.ReportAllocs()
							i := 0
							for b.Loop() {
								benchRowSink += f(w[i*rb : (i+1)*rb])
								if i++; i == rows {
									i = 0
								}
							}
						})
					}
				})
			}
		})
	}
}

func BenchmarkRowDot(b *testing.B) { benchRowDot(b, false) }

func BenchmarkRowDotHot(b *testing.B) { benchRowDot(b, true) }
