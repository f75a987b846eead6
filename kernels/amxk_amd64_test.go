//go:build !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// amxKBatch returns the AMX path's batch kernel for the K-quant type typ
// (Run nil when there is none).
func amxKBatch(typ quant.Type) TileQ8K {
	k := AMX.tiles()
	if k == nil {
		return TileQ8K{}
	}
	if typ == quant.Q6_K {
		return k.Q6_KBatch
	}
	return k.Q4_KBatch
}

// amxKLongRows are super-block counts beyond 20 that
// TestAMXKTilesMatchGeneric also tries (the widest rows of the models).
var amxKLongRows = []int{22, 43, 64}

// TestAMXKTilesMatchGeneric: the AMX batch kernels of the K-quant types
// give, for every (row, token), the generic row kernel's bits: super-block
// counts 0..20 (every lane b%8, and more) and some long rows, token counts
// 1..35 (whole and partial groups of 16), rows from {1, 5, 16, 19, 32, 37}
// (whole and partial groups of 16 rows), random, real and extreme
// weights, quantized and extreme activations, unaligned slices, a row
// stride wider than the row, dst with a leading dimension wider than nr
// whose other entries must stay untouched, scratch at a random offset.
func TestAMXKTilesMatchGeneric(t *testing.T) {
	if !AMX.Supported() {
		t.Skip("CPU lacks AMX-INT8 (or the kernel does not permit it)")
	}
	for _, typ := range []quant.Type{quant.Q4_K, quant.Q6_K} {
		tile := amxKBatch(typ)
		if tile.Run == nil {
			continue
		}
		gen := func(w []byte, a *asmAct) float32 { return genericKernels.Q4_K(w, a.q, a.d, a.bsums) }
		if typ == quant.Q6_K {
			gen = func(w []byte, a *asmAct) float32 { return genericKernels.Q6_K(w, a.q, a.d) }
		}
		t.Run(typ.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(typ), 14))
			ts := typ.TypeSize()
			for nbi := range 21 + len(amxKLongRows) {
				nb, toks := nbi, 35
				if nbi > 20 {
					nb, toks = amxKLongRows[nbi-21], 18
				}
				for nt := 1; nt <= toks; nt++ {
					wk, ak := r.IntN(3), r.IntN(2)
					nr := []int{1, 5, 16, 19, 32, 37}[r.IntN(6)]
					rb := nb*ts + r.IntN(2)*ts
					w := asmWeights(r, typ, nr*rb/ts, wk)
					acts, qa, da, ga := q8kTileActivations(r, nt, nb, ak)
					ldd := nr + r.IntN(3)
					off := r.IntN(8)
					buf := make([]float32, off+nt*ldd+8)
					for i := range buf {
						buf[i] = tileGuard
					}
					sc := make([]byte, tile.Scratch(nb)+64)[r.IntN(64):]
					tile.Run(buf[off:off+nt*ldd], ldd, w, rb, nr, qa, da, ga, nt, sc)
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
}
