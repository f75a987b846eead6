package kernels

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// This file checks the generic row kernels against a reference that
// follows the package doc one element at a time: refUnpack decodes a
// weight block into integers by the layout alone (checked against
// quant.Dequantize), and refDot applies the doc's formulas to them.

// refBlock is one decoded weight block: element i has integer quant q[i]
// (offset already removed for the signed formats) in sub-block i/sub.
type refBlock struct {
	d, m float32 // dw and mw (Q4_1, Q5_1) or dmin (Q4_K, Q5_K)
	q    []int32
	sub  int     // sub-block size (K types)
	sc   []int32 // sub-block scales (K types)
	mn   []int32 // sub-block mins (Q4_K, Q5_K)
}

func half(b []byte) float32 { return quant.FP16ToFP32(binary.LittleEndian.Uint16(b)) }

// refUnpack decodes one block of type t, element by element, from the byte
// layout described in weights/quant.
func refUnpack(t quant.Type, b []byte) refBlock {
	nib := func(qs []byte, i int) int32 { // element i of a 32-element nibble run
		if i < 16 {
			return int32(qs[i] & 15)
		}
		return int32(qs[i-16] >> 4)
	}
	switch t {
	case quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0:
		r := refBlock{d: half(b), q: make([]int32, 32)}
		off := 2
		if t == quant.Q4_1 || t == quant.Q5_1 {
			r.m = half(b[2:])
			off = 4
		}
		var qh uint32
		if t == quant.Q5_0 || t == quant.Q5_1 {
			qh = binary.LittleEndian.Uint32(b[off:])
			off += 4
		}
		for i := range 32 {
			switch t {
			case quant.Q8_0:
				r.q[i] = int32(int8(b[off+i]))
			case quant.Q4_0:
				r.q[i] = nib(b[off:], i) - 8
			case quant.Q4_1:
				r.q[i] = nib(b[off:], i)
			case quant.Q5_0:
				r.q[i] = nib(b[off:], i) | int32(qh>>i&1)<<4 - 16
			case quant.Q5_1:
				r.q[i] = nib(b[off:], i) | int32(qh>>i&1)<<4
			}
		}
		return r
	case quant.Q4_K, quant.Q5_K:
		r := refBlock{d: half(b), m: half(b[2:]), q: make([]int32, 256), sub: 32, sc: make([]int32, 8), mn: make([]int32, 8)}
		for j := range 8 {
			sc, m := quant.ScaleMinK4(j, b[4:16])
			r.sc[j], r.mn[j] = int32(sc), int32(m)
		}
		qs := b[16:]
		if t == quant.Q5_K {
			qs = b[48:]
		}
		for e := range 256 {
			run, within := e/64, e%64
			v := int32(qs[32*run+within%32] & 15)
			if within >= 32 {
				v = int32(qs[32*run+within%32] >> 4)
			}
			if t == quant.Q5_K {
				bit := 2 * run
				if within >= 32 {
					bit++
				}
				v |= int32(b[16+within%32]>>bit&1) << 4
			}
			r.q[e] = v
		}
		return r
	case quant.Q6_K:
		r := refBlock{d: half(b[208:]), q: make([]int32, 256), sub: 16, sc: make([]int32, 16)}
		for j := range 16 {
			r.sc[j] = int32(int8(b[192+j]))
		}
		for e := range 256 {
			h, rem := e/128, e%128
			quarter, l := rem/32, rem%32
			ql := b[64*h+l]
			if quarter%2 == 1 {
				ql = b[64*h+32+l]
			}
			lo := int32(ql & 15)
			if quarter >= 2 {
				lo = int32(ql >> 4)
			}
			hi := int32(b[128+32*h+l]>>(2*quarter)) & 3
			r.q[e] = lo | hi<<4 - 32
		}
		return r
	}
	panic("refUnpack: " + t.String())
}

// value is element i of the block as ggml's dequantizer computes it.
func (r *refBlock) value(t quant.Type, i int) float32 {
	switch t {
	case quant.Q4_0, quant.Q5_0, quant.Q8_0:
		return float32(r.q[i]) * r.d
	case quant.Q4_1, quant.Q5_1:
		return float32(float32(r.q[i])*r.d) + r.m
	case quant.Q4_K, quant.Q5_K:
		j := i / r.sub
		d1, m1 := r.d*float32(r.sc[j]), float32(r.m*float32(r.mn[j]))
		return float32(d1*float32(r.q[i])) - m1
	case quant.Q6_K:
		return r.d * float32(r.sc[i/r.sub]) * float32(r.q[i])
	}
	panic("value: " + t.String())
}

// refDot is the package doc's row rule for a quantized type, written from
// the decoded blocks.
func refDot(t quant.Type, w []byte, q []int8, d []float32, s []int32, bsums []int16) float32 {
	bs, ts := t.BlockSize(), t.TypeSize()
	var acc [8]float32
	var chain float32 // Q8_0's one accumulator
	for b := range len(w) / ts {
		blk := refUnpack(t, w[b*ts:(b+1)*ts])
		x := q[b*bs : (b+1)*bs]
		lane := &acc[b%8]
		switch t {
		case quant.Q8_0:
			var isum int32
			for i := range bs {
				isum += blk.q[i] * int32(x[i])
			}
			chain = fma32(float32(blk.d*d[b]), float32(isum), chain)
		case quant.Q4_0, quant.Q5_0, quant.Q4_1, quant.Q5_1:
			var isum int32
			for i := range bs {
				isum += blk.q[i] * int32(x[i])
			}
			*lane = fma32(float32(blk.d*d[b]), float32(isum), *lane)
			if t == quant.Q4_1 || t == quant.Q5_1 {
				*lane = fma32(float32(blk.m*d[b]), float32(s[b]), *lane)
			}
		case quant.Q4_K, quant.Q5_K, quant.Q6_K:
			var isum, msum int32
			for j := range bs / blk.sub {
				var sub int32
				for i := j * blk.sub; i < (j+1)*blk.sub; i++ {
					sub += blk.q[i] * int32(x[i])
				}
				isum += blk.sc[j] * sub
			}
			*lane = fma32(float32(blk.d*d[b]), float32(isum), *lane)
			if t != quant.Q6_K {
				g := bsums[16*b:]
				for j := range 8 {
					msum += blk.mn[j] * (int32(g[2*j]) + int32(g[2*j+1]))
				}
				*lane = fma32(-float32(blk.m*d[b]), float32(msum), *lane)
			}
		}
	}
	if t == quant.Q8_0 {
		return chain
	}
	return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

// refFloatDot is the package doc's float rule.
func refFloatDot(w, x []float32) float32 {
	n := len(x)
	n32 := n - n%32
	var acc [32]float32
	for i := range n32 {
		acc[i%32] = fma32(w[i], x[i], acc[i%32])
	}
	var r [8]float32
	for j := range 8 {
		r[j] = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24])
	}
	head := ((r[0] + r[4]) + (r[2] + r[6])) + ((r[1] + r[5]) + (r[3] + r[7]))
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(w[i], x[i], t)
	}
	return head + t
}

// randomBlocks returns nb blocks of t with random quants and scales of
// random magnitude (2^-14 .. 2^2, either sign), so that the order of float
// operations shows in the result bits.
func randomBlocks(r *rand.Rand, t quant.Type, nb int) []byte {
	ts := t.TypeSize()
	w := make([]byte, nb*ts)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	scale := func(b []byte) {
		f := float32(math.Ldexp(1+r.Float64(), -14+r.IntN(17)))
		if r.IntN(2) == 0 {
			f = -f
		}
		binary.LittleEndian.PutUint16(b, quant.FP32ToFP16(f))
	}
	for b := range nb {
		blk := w[b*ts : (b+1)*ts]
		switch t {
		case quant.Q4_1, quant.Q5_1, quant.Q4_K, quant.Q5_K:
			scale(blk[0:])
			scale(blk[2:])
		case quant.Q6_K:
			scale(blk[208:])
		default:
			scale(blk[0:])
		}
	}
	return w
}

// randomQ8 returns a random activation in the Q8 form (n values) and in the
// Q8K form when n is a multiple of 256: quants in [-127, 127] (extremes
// more likely) and scales of random magnitude.
func randomQ8(r *rand.Rand, n int) (Q8, Q8K) {
	var a Q8
	var k Q8K
	a.Q = make([]int8, n)
	for i := range a.Q {
		switch r.IntN(8) {
		case 0:
			a.Q[i] = 127
		case 1:
			a.Q[i] = -127
		default:
			a.Q[i] = int8(r.IntN(255) - 127)
		}
	}
	rd := func() float32 { return float32(math.Ldexp(1+r.Float64(), -10+r.IntN(12))) }
	a.D, a.S = make([]float32, n/32), make([]int32, n/32)
	for b := range a.D {
		a.D[b] = rd()
		for _, v := range a.Q[32*b : 32*b+32] {
			a.S[b] += int32(v)
		}
	}
	if n%256 == 0 {
		k.Q, k.D, k.BSums = a.Q, make([]float32, n/256), make([]int16, n/16)
		for b := range k.D {
			k.D[b] = rd()
		}
		for g := range k.BSums {
			for _, v := range a.Q[16*g : 16*g+16] {
				k.BSums[g] += int16(v)
			}
		}
	}
	return a, k
}

var quantKernelTypes = []quant.Type{quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0, quant.Q4_K, quant.Q5_K, quant.Q6_K}

func TestFP16(t *testing.T) {
	var b [2]byte
	for h := range 1 << 16 {
		binary.LittleEndian.PutUint16(b[:], uint16(h))
		if got, want := fp16(b[:]), quant.FP16ToFP32(uint16(h)); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fp16(%#04x) = %#08x, want %#08x", h, math.Float32bits(got), math.Float32bits(want))
		}
	}
}

func TestRefUnpackMatchesDequantize(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, typ := range quantKernelTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for range 50 {
				w := randomBlocks(r, typ, 1)
				want := make([]float32, typ.BlockSize())
				if err := quant.Dequantize(typ, want, w); err != nil {
					t.Fatal(err)
				}
				blk := refUnpack(typ, w)
				for i := range want {
					if got := blk.value(typ, i); math.Float32bits(got) != math.Float32bits(want[i]) {
						t.Fatalf("element %d: refUnpack value = %g, want %g (Dequantize)", i, got, want[i])
					}
				}
			}
		})
	}
}

// callQuant runs the generic kernel for typ.
func callQuant(typ quant.Type, w []byte, a *Q8, k *Q8K) float32 {
	g := &genericKernels
	switch typ {
	case quant.Q4_0:
		return g.Q4_0(w, a.Q, a.D)
	case quant.Q5_0:
		return g.Q5_0(w, a.Q, a.D)
	case quant.Q8_0:
		return g.Q8_0(w, a.Q, a.D)
	case quant.Q4_1:
		return g.Q4_1(w, a.Q, a.D, a.S)
	case quant.Q5_1:
		return g.Q5_1(w, a.Q, a.D, a.S)
	case quant.Q4_K:
		return g.Q4_K(w, k.Q, k.D, k.BSums)
	case quant.Q5_K:
		return g.Q5_K(w, k.Q, k.D, k.BSums)
	case quant.Q6_K:
		return g.Q6_K(w, k.Q, k.D)
	}
	panic(typ.String())
}

func callRef(typ quant.Type, w []byte, a *Q8, k *Q8K) float32 {
	if typ.BlockSize() == 256 {
		return refDot(typ, w, k.Q, k.D, nil, k.BSums)
	}
	return refDot(typ, w, a.Q, a.D, a.S, nil)
}

func TestQuantRowKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, typ := range quantKernelTypes {
		for _, nb := range []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 33} {
			t.Run(fmt.Sprintf("%s/blocks=%d", typ, nb), func(t *testing.T) {
				n := nb * typ.BlockSize()
				for trial := range 20 {
					w := randomBlocks(r, typ, nb)
					a, k := randomQ8(r, n)
					got, want := callQuant(typ, w, &a, &k), callRef(typ, w, &a, &k)
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("trial %d: %s row kernel(%d blocks) = %g, want %g", trial, typ, nb, got, want)
					}
				}
			})
		}
	}
}

// TestQuantRowKernelsExtremes checks exactness where the integer sums are
// largest: every quant and activation at its extreme.
func TestQuantRowKernelsExtremes(t *testing.T) {
	for _, typ := range quantKernelTypes {
		for _, fill := range []byte{0x00, 0xff, 0x88} {
			for _, qv := range []int8{127, -127} {
				t.Run(fmt.Sprintf("%s/fill=%#x/q=%d", typ, fill, qv), func(t *testing.T) {
					const nb = 9
					ts := typ.TypeSize()
					w := make([]byte, nb*ts)
					for i := range w {
						w[i] = fill
					}
					r := rand.New(rand.NewPCG(3, 3))
					fresh := randomBlocks(r, typ, nb)
					for b := range nb { // keep finite scales
						blk, src := w[b*ts:(b+1)*ts], fresh[b*ts:(b+1)*ts]
						switch typ {
						case quant.Q6_K:
							copy(blk[208:], src[208:])
						case quant.Q4_1, quant.Q5_1, quant.Q4_K, quant.Q5_K:
							copy(blk[:4], src[:4])
						default:
							copy(blk[:2], src[:2])
						}
					}
					a, k := randomQ8(r, nb*typ.BlockSize())
					for i := range a.Q {
						a.Q[i] = qv
					}
					for b := range a.S {
						a.S[b] = 32 * int32(qv)
					}
					for g := range k.BSums {
						k.BSums[g] = 16 * int16(qv)
					}
					got, want := callQuant(typ, w, &a, &k), callRef(typ, w, &a, &k)
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%s row kernel = %g, want %g", typ, got, want)
					}
				})
			}
		}
	}
}

// floatRow returns n random weights of typ (finite, magnitudes 2^-20 ..
// 2^10, both signs, some zeros) as bytes and as their exact float32 values.
func floatRow(r *rand.Rand, typ quant.Type, n int) ([]byte, []float32) {
	vals := make([]float32, n)
	for i := range vals {
		v := float32(math.Ldexp(1+r.Float64(), -20+r.IntN(31)))
		if r.IntN(2) == 0 {
			v = -v
		}
		if r.IntN(16) == 0 {
			v = 0
		}
		vals[i] = v
	}
	w := make([]byte, n*typ.TypeSize())
	if err := quant.Quantize(typ, w, vals); err != nil {
		panic(err)
	}
	if err := quant.Dequantize(typ, vals, w); err != nil { // the exact values stored
		panic(err)
	}
	return w, vals
}

func randomFloats(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(8)-4))
	}
	return x
}

func TestFloatRowKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, typ := range []quant.Type{quant.F32, quant.F16, quant.BF16} {
		sensitive := 0
		for _, n := range []int{0, 1, 5, 31, 32, 33, 63, 64, 65, 100, 255, 256, 257, 1000} {
			t.Run(fmt.Sprintf("%s/n=%d", typ, n), func(t *testing.T) {
				for trial := range 20 {
					w, vals := floatRow(r, typ, n)
					x := randomFloats(r, n)
					got, want := floatKernel(&genericKernels, typ)(w, x), refFloatDot(vals, x)
					if math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("trial %d: %s row kernel(n=%d) = %g, want %g", trial, typ, n, got, want)
					}
					var seq float32
					for i := range n {
						seq = float32(seq + float32(vals[i]*x[i]))
					}
					if seq != got {
						sensitive++
					}
				}
			})
		}
		// The inputs must be able to tell orders apart, or the test above
		// proves little.
		if sensitive == 0 {
			t.Errorf("%s: no input distinguished the canonical order from a sequential sum", typ)
		}
	}
}

// TestRowKernelsGolden pins the bits of every generic row kernel on fixed
// inputs, so that a change of order (or a compiler fusing what the source
// rounds, as GOAMD64=v3 allows) is caught even when the reference above
// changes with it. The inputs come from a seeded PCG and math/rand/v2's
// documented conversions.
func TestRowKernelsGolden(t *testing.T) {
	want := map[quant.Type]uint64{
		quant.Q4_0: 0xc24176ce72fa4f20,
		quant.Q4_1: 0x7252b91232431a1a,
		quant.Q5_0: 0x10118027df9bd236,
		quant.Q5_1: 0xfaf7d93fedccd23d,
		quant.Q8_0: 0xd0e2e75df0e07976,
		quant.Q4_K: 0xc3c0eed5a851bd1e,
		quant.Q5_K: 0x6ca7be0158d87c7f,
		quant.Q6_K: 0x3810fcf1b27edbd3,
		quant.F32:  0x866d0bc466f2ae27,
		quant.F16:  0xd1996b9de4c3da5b,
		quant.BF16: 0x3997a74fa5412200,
	}
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.F32, quant.F16, quant.BF16} {
		t.Run(typ.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(typ), 99))
			h := fnv.New64a()
			var buf [4]byte
			for _, nb := range []int{1, 3, 8, 9, 17} {
				n := nb * 256
				var got float32
				switch typ {
				case quant.F32, quant.F16, quant.BF16:
					n += nb // a tail
					w, _ := floatRow(r, typ, n)
					x := randomFloats(r, n)
					got = floatKernel(&genericKernels, typ)(w, x)
				default:
					w := randomBlocks(r, typ, n/typ.BlockSize())
					a, k := randomQ8(r, n)
					got = callQuant(typ, w, &a, &k)
				}
				binary.LittleEndian.PutUint32(buf[:], math.Float32bits(got))
				h.Write(buf[:])
			}
			if sum := h.Sum64(); sum != want[typ] {
				t.Errorf("hash of %s row kernel outputs = %#x, want %#x", typ, sum, want[typ])
			}
		})
	}
}

// floatKernel is k's row kernel for float type t.
func floatKernel(k *RowKernels, t quant.Type) func(w []byte, x []float32) float32 {
	switch t {
	case quant.F16:
		return k.F16
	case quant.BF16:
		return k.BF16
	}
	return k.F32
}

// BenchmarkRowKernels measures one generic row kernel call on a row of 4096
// elements; bytes/s counts the weight row.
func BenchmarkRowKernels(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(10, 10))
	a, k := randomQ8(r, n)
	for _, typ := range quantKernelTypes {
		w := randomBlocks(r, typ, n/typ.BlockSize())
		b.Run(fmt.Sprintf("%s/n=%d", typ, n), func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			for b.Loop() {
				callQuant(typ, w, &a, &k)
			}
		})
	}
	x := randomFloats(r, n)
	for _, typ := range []quant.Type{quant.F32, quant.F16, quant.BF16} {
		w, _ := floatRow(r, typ, n)
		f := floatKernel(&genericKernels, typ)
		b.Run(fmt.Sprintf("%s/n=%d", typ, n), func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			b.ReportAllocs()
			for b.Loop() {
				f(w, x)
			}
		})
	}
}
