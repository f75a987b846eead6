//go:build !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// TestFloatzTilesMatchGeneric: the AVX-512 F16 tile kernels against the
// generic F16 row kernel over every kernel shape the wrapper picks: rows
// 1..9 (every group of up to four and its remainder), tokens 1..27 (every
// remainder of every row group's token count, and from partMinTokens the
// packed path), and row lengths across every tail mod 32.
func TestFloatzTilesMatchGeneric(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("CPU lacks AVX-512")
	}
	r := rand.New(rand.NewPCG(51, 2))
	for _, n := range []int{0, 1, 17, 31, 32, 33, 64, 95, 100, 257} {
		for nr := 1; nr <= 9; nr++ {
			for nt := 1; nt <= 27; nt++ {
				rb := 2*n + 2*r.IntN(3)
				w := asmUnaligned[byte](r, (nr-1)*rb+2*n)
				for i := 0; i+1 < len(w); i += 2 {
					h := asmFiniteHalf(uint16(r.Uint32()))
					if r.IntN(8) == 0 {
						h = asmExtremeHalves[r.IntN(len(asmExtremeHalves))]
					}
					w[i], w[i+1] = byte(h), byte(h>>8)
				}
				x := asmUnaligned[float32](r, nt*n)
				scale := math.Ldexp(1, r.IntN(40)-20)
				for i := range x {
					x[i] = float32(r.NormFloat64() * scale)
				}
				ldd := nr + r.IntN(3)
				buf := make([]float32, (nt-1)*ldd+nr+4)
				for i := range buf {
					buf[i] = tileGuard
				}
				tileF16AVX512(buf[:(nt-1)*ldd+nr], ldd, w, rb, nr, x, nt, make([]byte, f16Scratch(n)))
				for i, v := range buf {
					row, tok := i%ldd, i/ldd
					if row >= nr || tok >= nt {
						if math.Float32bits(v) != math.Float32bits(tileGuard) {
							t.Fatalf("F16 tile (n=%d, nr=%d, nt=%d, ldd=%d) wrote %g at dst offset %d, outside its outputs", n, nr, nt, ldd, v, i)
						}
						continue
					}
					want := genericKernels.F16(w[row*rb:row*rb+2*n], x[tok*n:(tok+1)*n])
					if !asmSameBits(v, want) {
						t.Fatalf("F16 tile (n=%d, nr=%d, nt=%d): row %d token %d = %g (%#08x), generic row = %g (%#08x)",
							n, nr, nt, row, tok, v, math.Float32bits(v), want, math.Float32bits(want))
					}
				}
			}
		}
	}
}

// TestFloatzPartsMatchGeneric: the packed prefill path (tileF16Parts, the
// pack and part kernels) against the generic F16 row kernel, with parts
// of 1, 3 and 32 steps (32 elements a step): rows shorter than a step,
// than a part, exact multiples of the part, a part and 1..31 more, several
// parts and a short last part with a tail; token counts 1..23 (every
// remainder of the groups of six, and both orders of the groups); rows
// 1..9 and 31..37 (every remainder of the blocks of four, in one pass or
// two over the tokens); random strides, unaligned operands, random finite
// and extreme halves, and a guard band around the outputs.
func TestFloatzPartsMatchGeneric(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("CPU lacks AVX-512")
	}
	r := rand.New(rand.NewPCG(52, 7))
	for _, ps := range []int{1, 3, partSteps} {
		p := 32 * ps // elements a part
		ns := []int{0, 5, 31, 32, 33, 63, 64 + 17, p - 1, p, p + 1, p + 17, p + 31, 2 * p, 2*p + 32 + 17, 3*p + 31}
		if ps == partSteps {
			ns = append(ns, p/2+3)
		}
		for _, n := range ns {
			if n < 0 {
				continue
			}
			for _, nr := range []int{1, 2, 3, 4, 5, 6, 7, 9, 31, 32, 33, 36, 37} {
				nts := []int{1 + r.IntN(6), 7 + r.IntN(6), 13 + r.IntN(11)}
				if nr <= 9 {
					nts = []int{1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 16, 17 + r.IntN(7)}
				}
				for _, nt := range nts {
					testFloatzParts(t, r, n, nr, nt, ps)
				}
			}
		}
	}
}

func testFloatzParts(t *testing.T, r *rand.Rand, n, nr, nt, partSteps int) {
	t.Helper()
	rb := 2*n + 2*r.IntN(3)
	w := asmUnaligned[byte](r, (nr-1)*rb+2*n)
	for i := 0; i+1 < len(w); i += 2 {
		h := asmFiniteHalf(uint16(r.Uint32()))
		if r.IntN(8) == 0 {
			h = asmExtremeHalves[r.IntN(len(asmExtremeHalves))]
		}
		w[i], w[i+1] = byte(h), byte(h>>8)
	}
	x := asmUnaligned[float32](r, nt*n)
	scale := math.Ldexp(1, r.IntN(40)-20)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	ldd := nr + r.IntN(3)
	off := r.IntN(8)
	buf := make([]float32, off+(nt-1)*ldd+nr+8)
	for i := range buf {
		buf[i] = tileGuard
	}
	sc := make([]byte, f16Scratch(n)+64)[r.IntN(64):] // at any alignment
	tileF16Parts(buf[off:off+(nt-1)*ldd+nr], ldd, w, rb, nr, x, nt, sc, partSteps)
	for i, v := range buf {
		j := i - off
		row, tok := j%ldd, j/ldd
		if j < 0 || row >= nr || tok >= nt {
			if math.Float32bits(v) != math.Float32bits(tileGuard) {
				t.Fatalf("F16 parts (steps %d, n=%d, nr=%d, nt=%d, ldd=%d) wrote %g at dst offset %d, outside its outputs", partSteps, n, nr, nt, ldd, v, j)
			}
			continue
		}
		want := genericKernels.F16(w[row*rb:row*rb+2*n], x[tok*n:(tok+1)*n])
		if !asmSameBits(v, want) {
			t.Fatalf("F16 parts (steps %d, n=%d, nr=%d, nt=%d): row %d token %d = %g (%#08x), generic row = %g (%#08x)",
				partSteps, n, nr, nt, row, tok, v, math.Float32bits(v), want, math.Float32bits(want))
		}
	}
}

// TestFloatzShortOperands: the AVX-512 float wrappers panic, as the
// generic kernels do, on weights or outputs shorter than their operands
// need, instead of reading or writing out of bounds.
func TestFloatzShortOperands(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("CPU lacks AVX-512")
	}
	panics := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	x := make([]float32, 64)
	panics("F32", func() { dotF32AVX512(make([]byte, 4*64-1), x) })
	panics("F16", func() { dotF16AVX512(make([]byte, 2*64-1), x) })
	panics("BF16", func() { dotBF16AVX512(make([]byte, 2*64-1), x) })
	// Three rows of 64 halves at a stride of 130 bytes, two tokens.
	x2 := make([]float32, 2*64)
	panics("tile w", func() {
		tileF16AVX512(make([]float32, 64), 8, make([]byte, 2*130+127), 130, 3, x2, 2, make([]byte, f16Scratch(64)))
	})
	panics("tile dst", func() {
		tileF16AVX512(make([]float32, 8+2), 8, make([]byte, 2*130+128), 130, 3, x2, 2, make([]byte, f16Scratch(64)))
	})
	panics("tile stride", func() {
		tileF16AVX512(make([]float32, 64), 8, make([]byte, 1024), 126, 3, x2, 2, make([]byte, f16Scratch(64)))
	})
	// The same against partMinTokens tokens (the packed path).
	xp := make([]float32, partMinTokens*64)
	dn := (partMinTokens-1)*8 + 3
	panics("parts w", func() {
		tileF16AVX512(make([]float32, dn), 8, make([]byte, 2*130+127), 130, 3, xp, partMinTokens, make([]byte, f16Scratch(64)))
	})
	panics("parts dst", func() {
		tileF16AVX512(make([]float32, dn-1), 8, make([]byte, 2*130+128), 130, 3, xp, partMinTokens, make([]byte, f16Scratch(64)))
	})
	panics("parts stride", func() {
		tileF16AVX512(make([]float32, dn), 8, make([]byte, 1024), 126, 3, xp, partMinTokens, make([]byte, f16Scratch(64)))
	})
}

// TestFloatzRegisters: floatz_amd64.s names no opmask register and uses
// only the EVEX encodings (it may use any of the 32 vector registers): no
// VEX-only instruction.
func TestFloatzRegisters(t *testing.T) {
	src, err := os.ReadFile("floatz_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`\b(K[0-7]|VEXTRACTF128|VINSERTF128|VPERM2[FI]128|VPBLENDD|VBROADCASTI128|VXORPS|VZEROALL)\b`).Find(src); m != nil {
		t.Errorf("floatz_amd64.s uses %s", m)
	}
}

// BenchmarkFloatzMatMul is the F16 matrix product of 128 tokens with each
// of the benchmark layer's shapes, on one thread, AVX2 against AVX-512.
func BenchmarkFloatzMatMul(b *testing.B) {
	const tok = 128
	for _, sh := range [][2]int{{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}} {
		for _, p := range []Path{AVX2, AVX512} {
			if !p.Supported() {
				continue
			}
			b.Run(fmt.Sprintf("%dx%d/%s", sh[0], sh[1], p), func(b *testing.B) {
				rows, cols := sh[0], sh[1]
				data := make([]byte, 2*rows*cols)
				for i := 0; i < len(data); i += 2 {
					data[i+1] = 0x3c
				}
				m, err := NewMatrix(quant.F16, rows, cols, data)
				if err != nil {
					b.Fatal(err)
				}
				e, err := NewEngine(p, nil)
				if err != nil {
					b.Fatal(err)
				}
				x := make([]float32, tok*cols)
				for i := range x {
					x[i] = float32(i%7) - 3
				}
				dst := make([]float32, tok*rows)
				for b.Loop() {
					if err := e.MatMul(dst, m, x, tok); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(rows)*float64(cols)*tok*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkFloatzTile is one tile of nr F16 rows against tok tokens of n
// activations, back to back over distinct rows (as a matrix product's
// tiles), with the activations in L1 (tok*n small), L2 or, for a tile of
// one row of 5632 against 128 tokens (2.9 MB), beyond.
func BenchmarkFloatzTile(b *testing.B) {
	for _, sh := range [][3]int{{4, 3, 512}, {4, 128, 2048}, {1, 128, 5632}, {2, 128, 5632}, {4, 128, 5632}} {
		nr, tok, n := sh[0], sh[1], sh[2]
		for _, p := range []Path{AVX2, AVX512} {
			if !p.Supported() {
				continue
			}
			b.Run(fmt.Sprintf("nr=%d/tok=%d/n=%d/%s", nr, tok, n, p), func(b *testing.B) {
				const tiles = 64
				w := make([]byte, 2*nr*n*tiles)
				for i := 0; i < len(w); i += 2 {
					w[i+1] = 0x3c
				}
				x := make([]float32, tok*n)
				dst := make([]float32, tok*nr*tiles)
				tile := p.tiles().F16
				var sc []byte
				if tile.Scratch != nil {
					sc = make([]byte, tile.Scratch(n))
				}
				i := 0
				for b.Loop() {
					tile.Run(dst[i*nr:], nr*tiles, w[i*2*nr*n:(i+1)*2*nr*n], 2*n, nr, x, tok, sc)
					i = (i + 1) % tiles
				}
				b.ReportMetric(2*float64(nr*n*tok)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
