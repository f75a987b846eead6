//go:build !purego

package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/stratanet/strata/weights/quant"
)

// The AVX2 row kernels must give the generic kernels' bits on every input
// (the determinism contract). These tests compare the two paths entry by
// entry of RowKernels.

// TestRequireAssembly fails when the CPU has AVX2 but the build did not
// install the AVX2 path (or installed the generic kernels under its name).
func TestRequireAssembly(t *testing.T) {
	if !cpuHas(AVX2) {
		t.Skip("CPU lacks AVX2, FMA, F16C or BMI2")
	}
	if !AVX2.Supported() {
		t.Fatal("AVX2.Supported() = false on a CPU with AVX2")
	}
	if Best() == Generic {
		t.Fatal("Best() = generic on a CPU with AVX2")
	}
	k, g := reflect.ValueOf(*AVX2.Kernels()), reflect.ValueOf(genericKernels)
	for i := range k.NumField() {
		if k.Field(i).Pointer() == g.Field(i).Pointer() {
			t.Errorf("AVX2 path's %s is the generic kernel", k.Type().Field(i).Name)
		}
	}
	if !cpuHas(AVX512) {
		return
	}
	// The CPU has AVX-512 (F, BW, VL, VNNI): the AVX-512 path must be
	// there, be the best, and run no generic kernel.
	if !AVX512.Supported() {
		t.Fatal("AVX512.Supported() = false on a CPU with AVX-512 VNNI")
	}
	want := AVX512
	if cpuHas(AMX) {
		want = AMX
	}
	if b := Best(); b != want {
		t.Fatalf("Best() = %s on a CPU with AVX-512 VNNI (AMX usable: %v)", b, cpuHas(AMX))
	}
	for _, p := range []Path{AVX512, AMX} {
		if !cpuHas(p) {
			continue
		}
		z := reflect.ValueOf(*p.Kernels())
		for i := range z.NumField() {
			if z.Field(i).Pointer() == g.Field(i).Pointer() {
				t.Errorf("%s path's %s is the generic kernel", p, z.Type().Field(i).Name)
			}
		}
	}
}

// TestAMXUsed fails when the CPU has AMX-INT8 and Linux hands the tile
// state out, but the AMX path is missing or its batch kernels are not
// the ones prefill picks.
func TestAMXUsed(t *testing.T) {
	if !cpuHas(AVX512) || !cpu.X86.HasAMXTile || !cpu.X86.HasAMXInt8 || !amxPermitted {
		t.Skip("no AMX-INT8 here, or the system does not permit it")
	}
	if !AMX.Supported() {
		t.Fatal("AMX.Supported() = false on a CPU with AMX-INT8 and the tile state permitted")
	}
	k := AMX.tiles()
	for _, c := range []struct {
		typ quant.Type
		min int
	}{{quant.Q4_0, amxBatchTokens}, {quant.Q4_K, amxKBatchTokens}, {quant.Q6_K, amxKBatchTokens}} {
		picks := func(n int) bool {
			task := matTask{nTok: n}
			task.w.Type = c.typ
			task.pickTiles(k)
			return task.tq.Scratch != nil || task.tk.Scratch != nil
		}
		if !picks(c.min) || !picks(128) {
			t.Errorf("a %s product of %d or 128 tokens on the AMX path does not pick the AMX kernel", c.typ, c.min)
		}
		if picks(c.min-1) || picks(1) {
			t.Errorf("a %s product of %d tokens or one on the AMX path picks the AMX kernel", c.typ, c.min-1)
		}
	}
}

// forAsmPaths runs f as a subtest for every assembly path this CPU
// supports (AVX2, AVX512), and skips when there is none.
func forAsmPaths(t *testing.T, f func(t *testing.T, p Path)) {
	t.Helper()
	ran := false
	for _, p := range []Path{AVX2, AVX512, AMX} {
		if !p.Supported() {
			continue
		}
		ran = true
		t.Run(p.String(), func(t *testing.T) { f(t, p) })
	}
	if !ran {
		t.Skip("no assembly path is supported on this CPU")
	}
}

var asmQuantTypes = []quant.Type{quant.Q4_0, quant.Q5_0, quant.Q8_0, quant.Q4_1, quant.Q5_1, quant.Q4_K, quant.Q5_K, quant.Q6_K}

// asmAct is an activation in the Q8 (32-blocks) or Q8K (256-blocks) form.
type asmAct struct {
	q     []int8
	d     []float32
	s     []int32 // Q8 block sums
	bsums []int16 // Q8K group sums
}

// asmRowDot calls the row kernel of k for typ.
func asmRowDot(k *RowKernels, typ quant.Type, w []byte, a *asmAct) float32 {
	switch typ {
	case quant.Q4_0:
		return k.Q4_0(w, a.q, a.d)
	case quant.Q5_0:
		return k.Q5_0(w, a.q, a.d)
	case quant.Q8_0:
		return k.Q8_0(w, a.q, a.d)
	case quant.Q4_1:
		return k.Q4_1(w, a.q, a.d, a.s)
	case quant.Q5_1:
		return k.Q5_1(w, a.q, a.d, a.s)
	case quant.Q4_K:
		return k.Q4_K(w, a.q, a.d, a.bsums)
	case quant.Q5_K:
		return k.Q5_K(w, a.q, a.d, a.bsums)
	case quant.Q6_K:
		return k.Q6_K(w, a.q, a.d)
	}
	panic("no row kernel for " + typ.String())
}

// asmScaleOffsets are the byte offsets of a block's fp16 scales.
func asmScaleOffsets(typ quant.Type) []int {
	switch typ {
	case quant.Q4_1, quant.Q5_1, quant.Q4_K, quant.Q5_K:
		return []int{0, 2}
	case quant.Q6_K:
		return []int{208}
	}
	return []int{0}
}

// asmFiniteHalf makes h a finite fp16 (an Inf or NaN exponent is cleared
// to 15).
func asmFiniteHalf(h uint16) uint16 {
	if h&0x7c00 == 0x7c00 {
		h &^= 0x4000
	}
	return h
}

// Extreme fp16 scales: ± largest finite, ± smallest subnormal, ± zero, ±
// smallest normal, one.
var asmExtremeHalves = []uint16{0x7bff, 0xfbff, 0x0001, 0x8001, 0x0000, 0x8000, 0x0400, 0x8400, 0x3c00}

// asmWeights returns nb blocks of typ, at a random byte offset into a
// larger buffer. kind: 0 random bytes with random finite scales, 1
// weights/quant.Quantize of gaussian data, 2 extreme scales and quants.
func asmWeights(r *rand.Rand, typ quant.Type, nb, kind int) []byte {
	ts := typ.TypeSize()
	off := r.IntN(32)
	buf := make([]byte, off+nb*ts+r.IntN(3)*ts)
	w := buf[off : off+nb*ts]
	switch kind {
	case 0:
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		for b := range nb {
			for _, o := range asmScaleOffsets(typ) {
				p := w[b*ts+o:]
				binary.LittleEndian.PutUint16(p, asmFiniteHalf(binary.LittleEndian.Uint16(p)))
			}
		}
	case 1:
		x := make([]float32, nb*typ.BlockSize())
		scale := math.Ldexp(1, r.IntN(20)-10)
		for i := range x {
			x[i] = float32(r.NormFloat64() * scale)
		}
		if r.IntN(4) == 0 && nb > 0 { // a zero block
			b := r.IntN(nb) * typ.BlockSize()
			clear(x[b : b+typ.BlockSize()])
		}
		if err := quant.Quantize(typ, w, x); err != nil {
			panic(err)
		}
	case 2:
		fills := []byte{0x00, 0xff, 0x80, 0x7f, 0x88, 0x81, 0x01}
		for b := range nb {
			blk := w[b*ts : (b+1)*ts]
			f := fills[r.IntN(len(fills))]
			for i := range blk {
				if r.IntN(8) == 0 {
					blk[i] = byte(r.Uint32())
				} else {
					blk[i] = f
				}
			}
			for _, o := range asmScaleOffsets(typ) {
				binary.LittleEndian.PutUint16(blk[o:], asmExtremeHalves[r.IntN(len(asmExtremeHalves))])
			}
		}
	}
	return w
}

// asmActivation returns the activation form (Q8, or Q8K for the K types)
// of n values, each slice at a random element offset into a larger one.
// kind: 0 the generic quantizer of gaussian data, 1 extreme quants (±127,
// 0) with extreme scales (huge, tiny, zero).
func asmActivation(r *rand.Rand, kTypes bool, n, kind int) *asmAct {
	bs := Q8Block
	if kTypes {
		bs = Q8KBlock
	}
	nb := n / bs
	var a asmAct
	a.q = asmUnaligned[int8](r, n)
	a.d = asmUnaligned[float32](r, nb)
	a.s = asmUnaligned[int32](r, nb)
	a.bsums = asmUnaligned[int16](r, n/16)
	switch kind {
	case 0:
		x := make([]float32, n)
		scale := math.Ldexp(1, r.IntN(40)-20)
		for i := range x {
			x[i] = float32(r.NormFloat64() * scale)
		}
		if kTypes {
			var k Q8K
			if err := k.Quantize(x); err != nil {
				panic(err)
			}
			copy(a.q, k.Q)
			copy(a.d, k.D)
			copy(a.bsums, k.BSums)
		} else {
			var q Q8
			if err := q.Quantize(x); err != nil {
				panic(err)
			}
			copy(a.q, q.Q)
			copy(a.d, q.D)
			copy(a.s, q.S)
		}
		return &a
	case 1:
		vals := []int8{127, -127, 0}
		ds := []float32{1e20, 1e-30, 0, 1, 3e-39}
		for b := range nb {
			v := vals[r.IntN(len(vals))]
			for i := b * bs; i < (b+1)*bs; i++ {
				if r.IntN(6) == 0 {
					a.q[i] = int8(r.IntN(255) - 127)
				} else {
					a.q[i] = v
				}
			}
			a.d[b] = ds[r.IntN(len(ds))]
		}
		if !kTypes {
			for b := range nb {
				for _, v := range a.q[32*b : 32*b+32] {
					a.s[b] += int32(v)
				}
			}
		}
		for g := range a.bsums {
			for _, v := range a.q[16*g : 16*g+16] {
				a.bsums[g] += int16(v)
			}
		}
		return &a
	}
	panic("bad kind")
}

// asmUnaligned returns a zeroed slice of n elements at a random element
// offset (0..7) into a larger one.
func asmUnaligned[T any](r *rand.Rand, n int) []T {
	off := r.IntN(8)
	return make([]T, off+n+r.IntN(4))[off:][:n]
}

func asmSameBits(got, want float32) bool {
	return math.Float32bits(got) == math.Float32bits(want)
}

// TestAsmQuantRowsMatchGeneric: every block count 0..70 (all tails mod
// 8), random and real quantized weights, extreme scales and quants,
// activations from the generic quantizer and extreme ones, unaligned
// slices.
func TestAsmQuantRowsMatchGeneric(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		k := p.Kernels()
		for _, typ := range asmQuantTypes {
			t.Run(typ.String(), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(typ), 7))
				kTypes := typ.BlockSize() == Q8KBlock
				maxNB := 70
				if kTypes {
					maxNB = 40
				}
				for nb := 0; nb <= maxNB; nb++ {
					for wk := range 3 {
						for ak := range 2 {
							w := asmWeights(r, typ, nb, wk)
							a := asmActivation(r, kTypes, nb*typ.BlockSize(), ak)
							got := asmRowDot(k, typ, w, a)
							want := asmRowDot(&genericKernels, typ, w, a)
							if !asmSameBits(got, want) {
								t.Fatalf("%s row (nb=%d, weights kind %d, activation kind %d): %s = %g (%#08x), generic = %g (%#08x)",
									typ, nb, wk, ak, p, got, math.Float32bits(got), want, math.Float32bits(want))
							}
						}
					}
				}
			})
		}
	})
}

// TestAsmQuantRowsExtremeIsum: every quant and activation at the extreme
// that makes |isum| largest, both signs.
func TestAsmQuantRowsExtremeIsum(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		k := p.Kernels()
		for _, typ := range asmQuantTypes {
			for _, fill := range []byte{0x00, 0xff, 0x80, 0x88, 0x7f} {
				for _, qv := range []int8{127, -127} {
					t.Run(fmt.Sprintf("%s/fill=%#x/q=%d", typ, fill, qv), func(t *testing.T) {
						r := rand.New(rand.NewPCG(uint64(fill), uint64(qv)))
						nb := 19
						if typ.BlockSize() == Q8KBlock {
							nb = 11
						}
						ts := typ.TypeSize()
						w := make([]byte, nb*ts)
						for i := range w {
							w[i] = fill
						}
						for b := range nb {
							for _, o := range asmScaleOffsets(typ) {
								binary.LittleEndian.PutUint16(w[b*ts+o:], asmExtremeHalves[r.IntN(len(asmExtremeHalves))])
							}
						}
						a := asmActivation(r, typ.BlockSize() == Q8KBlock, nb*typ.BlockSize(), 0)
						for i := range a.q {
							a.q[i] = qv
						}
						for b := range a.s {
							a.s[b] = 32 * int32(qv)
						}
						for g := range a.bsums {
							a.bsums[g] = 16 * int16(qv)
						}
						got, want := asmRowDot(k, typ, w, a), asmRowDot(&genericKernels, typ, w, a)
						if !asmSameBits(got, want) {
							t.Fatalf("%s row = %g (%#08x), want %g (%#08x)", typ, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					})
				}
			}
		}
	})
}

// TestAsmQuantRowsShortOperand: an operand shorter (in capacity) than
// len(d) blocks panics on the AVX2 path as on the generic one, instead of
// reading out of bounds.
func TestAsmQuantRowsShortOperand(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		k := p.Kernels()
		r := rand.New(rand.NewPCG(5, 5))
		for _, typ := range asmQuantTypes {
			nb := 9
			w := asmWeights(r, typ, nb, 0)
			a := asmActivation(r, typ.BlockSize() == Q8KBlock, nb*typ.BlockSize(), 0)
			short := *a
			short.q = short.q[: len(short.q)-1 : len(short.q)-1]
			for name, c := range map[string]struct {
				w []byte
				a *asmAct
			}{"w": {w[: len(w)-1 : len(w)-1], a}, "q": {w, &short}} {
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("%s row with short %s did not panic", typ, name)
						}
					}()
					asmRowDot(k, typ, c.w, c.a)
				}()
			}
		}
	})
}

// asmFloatWeights returns n finite weights of typ at a random byte offset:
// random bit patterns (subnormals and signed zeros included) of moderate
// exponent for F32, any finite pattern for F16 and BF16 with exponents
// kept moderate so that no sum overflows.
func asmFloatWeights(r *rand.Rand, typ quant.Type, n int) []byte {
	ts := typ.TypeSize()
	off := r.IntN(16)
	w := make([]byte, off+n*ts+r.IntN(8))[off:][:n*ts]
	for i := range n {
		switch typ {
		case quant.F32:
			// Exponent in [-40, 40] or a subnormal, random sign and mantissa.
			bits := r.Uint32() & 0x807fffff
			if r.IntN(16) != 0 {
				bits |= uint32(127-40+r.IntN(81)) << 23
			}
			binary.LittleEndian.PutUint32(w[4*i:], bits)
		case quant.F16:
			binary.LittleEndian.PutUint16(w[2*i:], asmFiniteHalf(uint16(r.Uint32())))
		case quant.BF16:
			bits := uint16(r.Uint32()) & 0x807f
			if r.IntN(16) != 0 {
				bits |= uint16(127-40+r.IntN(81)) << 7
			}
			binary.LittleEndian.PutUint16(w[2*i:], bits)
		}
	}
	return w
}

func asmFloatKernel(k *RowKernels, typ quant.Type) func(w []byte, x []float32) float32 {
	switch typ {
	case quant.F32:
		return k.F32
	case quant.F16:
		return k.F16
	}
	return k.BF16
}

// TestAsmFloatRowsMatchGeneric: lengths 0..300 (every tail mod 32) and a
// few model sizes, unaligned weights and activations.
func TestAsmFloatRowsMatchGeneric(t *testing.T) {
	forAsmPaths(t, func(t *testing.T, p Path) {
		k := p.Kernels()
		sizes := []int{2048, 2048 + 31, 5632, 5632 + 17}
		for n := range 301 {
			sizes = append(sizes, n)
		}
		for _, typ := range []quant.Type{quant.F32, quant.F16, quant.BF16} {
			t.Run(typ.String(), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(typ), 9))
				f, g := asmFloatKernel(k, typ), asmFloatKernel(&genericKernels, typ)
				for _, n := range sizes {
					for range 3 {
						w := asmFloatWeights(r, typ, n)
						x := asmUnaligned[float32](r, n)
						scale := math.Ldexp(1, r.IntN(40)-20)
						for i := range x {
							x[i] = float32(r.NormFloat64() * scale)
							if r.IntN(32) == 0 {
								x[i] = float32(math.Copysign(0, float64(r.IntN(2)-1)))
							}
						}
						got, want := f(w, x), g(w, x)
						if !asmSameBits(got, want) {
							t.Fatalf("%s row (n=%d) %s = %g (%#08x), generic = %g (%#08x)",
								typ, n, p, got, math.Float32bits(got), want, math.Float32bits(want))
						}
					}
				}
			})
		}
	})
}
