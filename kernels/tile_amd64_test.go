//go:build !purego

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// The AVX2 tile kernels must give, for every (row, token), the generic row
// kernel's bits (the determinism contract).

// tileTypes are the weight types with an AVX2 tile kernel.
var tileTypes = []quant.Type{quant.Q4_0, quant.Q8_0}

func tileKernel(k *TileKernels, typ quant.Type) TileQ8 {
	switch typ {
	case quant.Q4_0:
		return k.Q4_0
	case quant.Q8_0:
		return k.Q8_0
	}
	return TileQ8{}
}

// tileKernelsOf returns every tile kernel of table k for typ: the one for
// any token count and the batch one, if there is one (AMX).
func tileKernelsOf(k *TileKernels, typ quant.Type) []TileQ8 {
	var all []TileQ8
	if t := tileKernel(k, typ); t.Run != nil {
		all = append(all, t)
	}
	b := k.Q4_0Batch
	if typ == quant.Q8_0 {
		b = k.Q8_0Batch
	}
	if b.Run != nil {
		all = append(all, b)
	}
	return all
}

// TestRequireTiles fails when the CPU has AVX2 but the AVX2 path has no
// tile kernel for a type that should have one.
func TestRequireTiles(t *testing.T) {
	if !cpuHas(AVX2) {
		t.Skip("CPU lacks AVX2, FMA, F16C or BMI2")
	}
	k := AVX2.tiles()
	if k == nil {
		t.Fatal("AVX2.tiles() = nil on a CPU with AVX2")
	}
	v := reflect.ValueOf(*k)
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Struct || strings.HasSuffix(v.Type().Field(i).Name, "Batch") {
			continue // the batch kernels are the AMX path's
		}
		if v.Field(i).FieldByName("Run").IsNil() {
			t.Errorf("AVX2 path has no %s tile kernel", v.Type().Field(i).Name)
		}
	}
	if Generic.tiles() != nil {
		t.Error("Generic.tiles() != nil")
	}
	if !cpuHas(AVX512) {
		return
	}
	// Every tile kernel of the AVX-512 path is its own, not AVX2's.
	z := AVX512.tiles()
	if z == nil {
		t.Fatal("AVX512.tiles() = nil on a CPU with AVX-512")
	}
	zv := reflect.ValueOf(*z)
	for i := range zv.NumField() {
		if zv.Field(i).Kind() != reflect.Struct || strings.HasSuffix(zv.Type().Field(i).Name, "Batch") {
			continue
		}
		if zv.Field(i).FieldByName("Run").Pointer() == v.Field(i).FieldByName("Run").Pointer() {
			t.Errorf("AVX512 path's %s tile kernel is AVX2's", zv.Type().Field(i).Name)
		}
	}
}

// tileGuard is the sentinel around and between a tile's outputs.
var tileGuard = math.Float32frombits(0x7fc0dead)

// TestAsmTilesMatchGeneric: every block count 0..70 (all tails mod 8) and
// some long rows (tileLongRows),
// token counts 1..17 (all remainders mod 4, every pair count of AVX-512's
// chunks of 16 and one past), random and real quantized and
// extreme weights, quantized and extreme activations, unaligned slices,
// nr rows of a larger row stride, and dst with a leading dimension wider
// than nr whose other entries must stay untouched.
func TestAsmTilesMatchGeneric(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		for _, typ := range tileTypes {
			for _, tile := range tileKernelsOf(p.tiles(), typ) {
				gen := rowKernelQ8(&genericKernels, typ)
				name := typ.String()
				// A batch kernel takes many rows and tokens at a time: try
				// whole and partial groups of both.
				maxTok, rowsOf := 17, func(r *rand.Rand) int { return 1 + r.IntN(3) }
				if tile.MinTokens > 0 || tile.Rows > 0 {
					name += "/batch"
					maxTok = 35
					rowsOf = func(r *rand.Rand) int { return []int{1, 5, 16, 19, 32, 37}[r.IntN(6)] }
				}
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(typ), 11))
					ts := typ.TypeSize()
					for nb := range 71 + len(tileLongRows) {
						if nb > 70 {
							nb = tileLongRows[nb-71]
						}
						for nt := 1; nt <= maxTok; nt++ {
							wk, ak := r.IntN(3), r.IntN(2)
							nr := rowsOf(r)
							pad := r.IntN(2) * ts // a row stride wider than the row
							rb := nb*ts + pad
							w := asmWeights(r, typ, nr*rb/ts, wk)
							acts := make([]*asmAct, nt)
							var q []int8
							var d []float32
							var s []int32
							for i := range acts {
								acts[i] = asmActivation(r, false, nb*Q8Block, ak)
								q = append(q, acts[i].q...)
								d = append(d, acts[i].d...)
								s = append(s, acts[i].s...)
							}
							// Unaligned copies of the concatenated activations.
							qa, da, sa := asmUnaligned[int8](r, max(1, tile.PackScale)*len(q)), asmUnaligned[float32](r, len(d)), asmUnaligned[int32](r, len(s))
							if tile.Pack != nil {
								tile.Pack(qa, da, sa, q, d, s, nt)
							} else {
								copy(qa, q)
								copy(da, d)
								copy(sa, s)
							}
							ldd := nr + r.IntN(3)
							off := r.IntN(8)
							buf := make([]float32, off+nt*ldd+8)
							for i := range buf {
								buf[i] = tileGuard
							}
							dst := buf[off : off+nt*ldd]
							var sc []byte
							if tile.Scratch != nil {
								sc = make([]byte, tile.Scratch(nb)+64)[r.IntN(64):]
							}
							tile.Run(dst, ldd, w, rb, nr, qa, da, sa, nt, sc)
							for i, v := range buf {
								j := i - off
								inside := j >= 0 && j < nt*ldd && j%ldd < nr
								if !inside {
									if math.Float32bits(v) != math.Float32bits(tileGuard) {
										t.Fatalf("%s tile (nb=%d, nt=%d, nr=%d, ldd=%d) wrote %g at dst offset %d, outside its outputs", typ, nb, nt, nr, ldd, v, j)
									}
									continue
								}
								row, a := j%ldd, acts[j/ldd]
								want := gen(w[row*rb:row*rb+nb*ts], a.q, a.d)
								if !asmSameBits(v, want) {
									t.Fatalf("%s tile (nb=%d, nt=%d, nr=%d, weights kind %d, activation kind %d): row %d token %d = %g (%#08x), generic row = %g (%#08x)",
										typ, nb, nt, nr, wk, ak, row, j/ldd, v, math.Float32bits(v), want, math.Float32bits(want))
								}
							}
						}
					}
				})
			}
		}
	})
}

// q8kTileActivations returns nt random Q8K activations of nb blocks
// (asmActivation's kind ak) and their q, d and bsums laid end to end, at
// unaligned offsets.
func q8kTileActivations(r *rand.Rand, nt, nb, ak int) (acts []*asmAct, qa []int8, da []float32, ga []int16) {
	acts = make([]*asmAct, nt)
	var q []int8
	var d []float32
	var g []int16
	for i := range acts {
		acts[i] = asmActivation(r, true, nb*Q8KBlock, ak)
		q = append(q, acts[i].q...)
		d = append(d, acts[i].d...)
		g = append(g, acts[i].bsums...)
	}
	qa, da, ga = asmUnaligned[int8](r, len(q)), asmUnaligned[float32](r, len(d)), asmUnaligned[int16](r, len(g))
	copy(qa, q)
	copy(da, d)
	copy(ga, g)
	return acts, qa, da, ga
}

// tileLongRows are block counts beyond 70 that TestAsmTilesMatchGeneric
// also tries: rows that the AVX-512 kernels take in parts (every part
// length mod 8, and a short last part).
var tileLongRows = []int{81, 100, 129, 176, 203}

// rowKernelQ8 is k's row kernel for a Q8-rule type.
func rowKernelQ8(k *RowKernels, typ quant.Type) func(w []byte, q []int8, d []float32) float32 {
	switch typ {
	case quant.Q4_0:
		return k.Q4_0
	case quant.Q5_0:
		return k.Q5_0
	case quant.Q8_0:
		return k.Q8_0
	}
	panic(fmt.Sprintf("no Q8-rule row kernel for %s", typ))
}

// TestTileRegisters: the generated tile kernels use only the sixteen
// vector registers of AVX2 (avo's allocator may hand out Y16..Y31, which
// need AVX-512).
func TestTileRegisters(t *testing.T) {
	src, err := os.ReadFile("tile_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`\b([XY](1[6-9]|2[0-9]|3[01])|Z[0-9]+|K[0-7])\b`).Find(src); m != nil {
		t.Errorf("tile_amd64.s uses %s, not an AVX2 register", m)
	}
}

// TestAsmKTilesMatchGeneric is TestAsmTilesMatchGeneric for the K-quant
// tile kernels: super-block counts 0..20 (every lane b%8 of the
// accumulators, and more), token counts 1..9.
func TestAsmKTilesMatchGeneric(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		for _, typ := range []quant.Type{quant.Q4_K, quant.Q6_K} {
			var tile TileQ8K
			var gen func(w []byte, a *asmAct) float32
			switch typ {
			case quant.Q4_K:
				tile = p.tiles().Q4_K
				gen = func(w []byte, a *asmAct) float32 { return genericKernels.Q4_K(w, a.q, a.d, a.bsums) }
			case quant.Q6_K:
				tile = p.tiles().Q6_K
				gen = func(w []byte, a *asmAct) float32 { return genericKernels.Q6_K(w, a.q, a.d) }
			}
			t.Run(typ.String(), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(typ), 12))
				ts := typ.TypeSize()
				for nb := 0; nb <= 20; nb++ {
					for nt := 1; nt <= 9; nt++ {
						wk, ak := r.IntN(3), r.IntN(2)
						nr := 1 + r.IntN(3)
						rb := nb*ts + r.IntN(2)*ts
						w := asmWeights(r, typ, nr*rb/ts, wk)
						acts, qa, da, ga := q8kTileActivations(r, nt, nb, ak)
						ldd := nr + r.IntN(3)
						off := r.IntN(8)
						buf := make([]float32, off+nt*ldd+8)
						for i := range buf {
							buf[i] = tileGuard
						}
						tile.Run(buf[off:off+nt*ldd], ldd, w, rb, nr, qa, da, ga, nt, nil)
						for i, v := range buf {
							j := i - off
							if !(j >= 0 && j < nt*ldd && j%ldd < nr) {
								if math.Float32bits(v) != math.Float32bits(tileGuard) {
									t.Fatalf("%s tile (nb=%d, nt=%d, nr=%d, ldd=%d) wrote %g at dst offset %d, outside its outputs", typ, nb, nt, nr, ldd, v, j)
								}
								continue
							}
							row, a := j%ldd, acts[j/ldd]
							want := gen(w[row*rb:row*rb+nb*ts], a)
							if !asmSameBits(v, want) {
								t.Fatalf("%s tile (nb=%d, nt=%d, nr=%d, weights kind %d, activation kind %d): row %d token %d = %g (%#08x), generic row = %g (%#08x)",
									typ, nb, nt, nr, wk, ak, row, j/ldd, v, math.Float32bits(v), want, math.Float32bits(want))
							}
						}
					}
				}
			})
		}
	})
}

// TestAsmFloatTilesMatchGeneric: the F16 tile kernel against the generic
// F16 row kernel, row lengths 0..100 (every tail mod 32), token counts
// 1..7, random finite and extreme halves.
func TestAsmFloatTilesMatchGeneric(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		tile := p.tiles().F16
		r := rand.New(rand.NewPCG(16, 13))
		for n := 0; n <= 100; n++ {
			for nt := 1; nt <= 7; nt++ {
				nr := 1 + r.IntN(3)
				rb := 2*n + 2*r.IntN(3)
				w := asmUnaligned[byte](r, nr*rb)
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
				buf := make([]float32, off+nt*ldd+8)
				for i := range buf {
					buf[i] = tileGuard
				}
				var sc []byte
				if tile.Scratch != nil {
					sc = make([]byte, tile.Scratch(n)+64)[r.IntN(64):]
				}
				tile.Run(buf[off:off+nt*ldd], ldd, w, rb, nr, x, nt, sc)
				for i, v := range buf {
					j := i - off
					if !(j >= 0 && j < nt*ldd && j%ldd < nr) {
						if math.Float32bits(v) != math.Float32bits(tileGuard) {
							t.Fatalf("F16 tile (n=%d, nt=%d, nr=%d, ldd=%d) wrote %g at dst offset %d, outside its outputs", n, nt, nr, ldd, v, j)
						}
						continue
					}
					row, tok := j%ldd, j/ldd
					want := genericKernels.F16(w[row*rb:row*rb+2*n], x[tok*n:(tok+1)*n])
					if !asmSameBits(v, want) {
						t.Fatalf("F16 tile (n=%d, nt=%d, nr=%d): row %d token %d = %g (%#08x), generic row = %g (%#08x)",
							n, nt, nr, row, tok, v, math.Float32bits(v), want, math.Float32bits(want))
					}
				}
			}
		}
	})
}
