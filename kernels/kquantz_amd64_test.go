//go:build !purego

package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// The AVX-512 K-quant kernels (kquantz_amd64.go) beyond what the shared
// assembly tests cover: rows of several whole groups of eight blocks and a
// tail, chunks of more than kqzTokens tokens, and every weight at the
// extreme that makes the int16 intermediates largest.

// kqzGeneric is the generic row rule of typ.
func kqzGeneric(typ quant.Type, w []byte, a *asmAct) float32 {
	switch typ {
	case quant.Q4_K:
		return genericKernels.Q4_K(w, a.q, a.d, a.bsums)
	case quant.Q5_K:
		return genericKernels.Q5_K(w, a.q, a.d, a.bsums)
	}
	return genericKernels.Q6_K(w, a.q, a.d)
}

// kqzCheck runs tile over nr rows of w (stride rb) against acts and
// compares every output with the generic row rule.
func kqzCheck(t *testing.T, typ quant.Type, tile TileQ8K, w []byte, rb, nr, nb int, acts []*asmAct) {
	t.Helper()
	var q []int8
	var d []float32
	var g []int16
	for _, a := range acts {
		q, d, g = append(q, a.q...), append(d, a.d...), append(g, a.bsums...)
	}
	nt := len(acts)
	ldd := nr + 1
	dst := make([]float32, nt*ldd)
	tile.Run(dst, ldd, w, rb, nr, q, d, g, nt, nil)
	ts := typ.TypeSize()
	for tok, a := range acts {
		for r := range nr {
			want := kqzGeneric(typ, w[r*rb:r*rb+nb*ts], a)
			if got := dst[tok*ldd+r]; !asmSameBits(got, want) {
				t.Fatalf("%s (nb=%d, nt=%d, nr=%d): row %d token %d = %g (%#08x), generic %g (%#08x)",
					typ, nb, nt, nr, r, tok, got, math.Float32bits(got), want, math.Float32bits(want))
			}
		}
	}
}

func kqzTiles(t *testing.T) map[quant.Type]TileQ8K {
	if !AVX512.Supported() {
		t.Skip("CPU lacks the AVX-512 path")
	}
	k := AVX512.tiles()
	return map[quant.Type]TileQ8K{quant.Q4_K: k.Q4_K, quant.Q6_K: k.Q6_K}
}

func TestKQZTilesLong(t *testing.T) {
	for typ, tile := range kqzTiles(t) {
		t.Run(typ.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(typ), 99))
			ts := typ.TypeSize()
			for _, nb := range []int{7, 8, 9, 16, 23, 24, 25, 40} {
				for _, nt := range []int{1, 7, 8, 9, 16, 17} {
					nr := 1 + r.IntN(4)
					rb := nb*ts + r.IntN(2)*ts
					w := asmWeights(r, typ, nr*rb/ts, r.IntN(3))
					acts := make([]*asmAct, nt)
					for i := range acts {
						acts[i] = asmActivation(r, true, nb*Q8KBlock, r.IntN(2))
					}
					kqzCheck(t, typ, tile, w, rb, nr, nb, acts)
				}
			}
		})
	}
}

// TestKQZExtreme: every quant at 0 or at its largest, every scale at its
// largest magnitude, every activation quant ±127.
func TestKQZExtreme(t *testing.T) {
	for typ, tile := range kqzTiles(t) {
		for _, fill := range []byte{0xff, 0x80, 0x00} {
			for _, qv := range []int8{127, -127} {
				t.Run(fmt.Sprintf("%s/fill=%#x/q=%d", typ, fill, qv), func(t *testing.T) {
					const nb, nr = 11, 2
					ts := typ.TypeSize()
					w := make([]byte, nr*nb*ts)
					for i := range w {
						w[i] = fill
					}
					for b := range nr * nb {
						if typ == quant.Q6_K && fill == 0xff {
							// Quants 63 against scales -128.
							for i := 192; i < 208; i++ {
								w[b*ts+i] = 0x80
							}
						}
						for _, o := range asmScaleOffsets(typ) {
							binary.LittleEndian.PutUint16(w[b*ts+o:], 0x3c00)
						}
					}
					r := rand.New(rand.NewPCG(uint64(fill), 5))
					acts := make([]*asmAct, 3)
					for i := range acts {
						a := asmActivation(r, true, nb*Q8KBlock, 0)
						for j := range a.q {
							a.q[j] = qv
						}
						for g := range a.bsums {
							a.bsums[g] = 16 * int16(qv)
						}
						acts[i] = a
					}
					kqzCheck(t, typ, tile, w, nb*ts, nr, nb, acts)
				})
			}
		}
	}
}

// TestKQZQ5KRows: the Q5_K row kernel (the one-token kernel) on long rows.
func TestKQZQ5KRows(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("CPU lacks the AVX-512 path")
	}
	k := AVX512.Kernels()
	r := rand.New(rand.NewPCG(5, 5))
	for _, nb := range []int{0, 1, 8, 9, 22, 40} {
		for range 4 {
			w := asmWeights(r, quant.Q5_K, nb, r.IntN(3))
			a := asmActivation(r, true, nb*Q8KBlock, r.IntN(2))
			got, want := k.Q5_K(w, a.q, a.d, a.bsums), kqzGeneric(quant.Q5_K, w, a)
			if !asmSameBits(got, want) {
				t.Fatalf("Q5_K nb=%d: %g (%#08x), generic %g (%#08x)", nb, got, math.Float32bits(got), want, math.Float32bits(want))
			}
		}
	}
}

// BenchmarkKQZPrefill is the AVX-512 K-quant tile kernels against the AVX2
// ones: 128 tokens against one tile of rows (16 KiB of weights, in cache);
// it reports GFLOP/s (2 per weight per token).
func BenchmarkKQZPrefill(b *testing.B) {
	if !AVX512.Supported() {
		b.Skip("CPU lacks the AVX-512 path")
	}
	for _, typ := range []quant.Type{quant.Q4_K, quant.Q6_K} {
		for _, p := range []Path{AVX2, AVX512} {
			for _, cols := range []int{2048, 5632} {
				b.Run(fmt.Sprintf("%s/%s/cols=%d", typ, p, cols), func(b *testing.B) {
					const nt = 128
					tile := p.tiles().Q4_K
					if typ == quant.Q6_K {
						tile = p.tiles().Q6_K
					}
					nb, ts := cols/Q8KBlock, typ.TypeSize()
					rb := nb * ts
					nr := max(1, min(32, (16<<10)/rb))
					w := benchRowWeights(typ, cols, nr)
					var q []int8
					var d []float32
					var g []int16
					_, ak, _ := benchRowActivation(cols)
					for range nt {
						q, d, g = append(q, ak.Q...), append(d, ak.D...), append(g, ak.BSums...)
					}
					dst := make([]float32, nr*nt)
					for b.Loop() {
						tile.Run(dst, nr, w, rb, nr, q, d, g, nt, nil)
					}
					b.ReportMetric(2*float64(nr*cols*nt)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
