// Package avx2 holds the avo helpers that Strata's kernel generators
// share (kernels/_asm for the row kernels, _asm/tile for the prefill tiles,
// _asm/vec for the vector kernels): constants, loop alignment, prefetch,
// horizontal sums in the package doc's fixed order, fp16 loads and the
// block-sum transposition. Each generator emits into its own assembly
// file through avo's global build context.
package avx2

import (
	"encoding/binary"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

func Rep(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

func BytesConst(name string, b []byte) Mem {
	if len(b)%8 != 0 {
		panic("BytesConst: length not a multiple of 8")
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < len(b); i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b[i:])))
	}
	return m
}

// LoopLabel places label l at a 32-byte boundary (PCALIGN, which avo does
// not know): the hot loops then sit in as few fetch windows as they can,
// and their speed does not change with the code before them.
func LoopLabel(l string) {
	Instruction(&ir.Instruction{Opcode: "PCALIGN", Operands: []Op{U8(32)}})
	Label(l)
}

// Token returns the operand at base+disp of token t (t < 4) of an
// operand laid out token after token: base + t*stride, with stride3 =
// 3*stride (used only for t == 3).
func Token(base, stride, stride3 reg.Register, t, disp int) Mem {
	switch t {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1, 2:
		return Mem{Base: base, Index: stride, Scale: uint8(t), Disp: disp}
	default:
		return Mem{Base: base, Index: stride3, Scale: 1, Disp: disp}
	}
}

// Prefetch asks for the cache lines of the n bytes at base+dist.
func Prefetch(base reg.Register, n, dist int) {
	for o := 0; o < n; o += 64 {
		PREFETCHT0(Mem{Base: base, Disp: dist + o})
	}
}

// LoadConst copies a constant into a new YMM register.
func LoadConst(m Mem) reg.VecVirtual {
	y := YMM()
	VMOVDQU(m, y)
	return y
}

// HSumF32 reduces the eight float32 lanes of acc with the package doc's
// fixed tree ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)) and returns an XMM whose
// lane 0 holds the result. acc is clobbered.
func HSumF32(acc reg.VecVirtual) reg.Register {
	lo := acc.AsX()
	hi := XMM()
	VEXTRACTF128(U8(1), acc, hi)
	VADDPS(hi, lo, lo) // b_j = a_j + a_{j+4}
	t := XMM()
	VMOVHLPS(lo, lo, t) // t0 = b2, t1 = b3
	VADDPS(t, lo, lo)   // c0 = b0 + b2, c1 = b1 + b3
	VMOVSHDUP(lo, t)    // t0 = c1
	VADDSS(t, lo, lo)   // c0 + c1
	return lo
}

// HSumI32 returns an XMM whose lane 0 holds the (exact, wrapping) sum of
// the eight int32 lanes of v. v is clobbered.
func HSumI32(v reg.VecVirtual) reg.Register {
	x := v.AsX()
	hi := XMM()
	VEXTRACTI128(U8(1), v, hi)
	VPADDD(hi, x, x)
	t := XMM()
	VPSHUFD(U8(0x4e), x, t)
	VPADDD(t, x, x)
	VPSHUFD(U8(0xb1), x, t)
	VPADDD(t, x, x)
	return x
}

// GatherF16 converts the eight fp16 values at base+off+k*stride (k < 8) to
// float32 lanes 0..7 of a new YMM.
func GatherF16(base reg.Register, off, stride int) reg.VecVirtual {
	x := XMM()
	r := GP32()
	MOVWLZX(Mem{Base: base, Disp: off}, r)
	VMOVD(r, x)
	for k := 1; k < 8; k++ {
		VPINSRW(U8(k), Mem{Base: base, Disp: off + k*stride}, x, x)
	}
	y := YMM()
	VCVTPH2PS(x, y)
	return y
}

// LoadF16 converts the fp16 value at m to float32 in lane 0 of a new XMM.
func LoadF16(m Mem) reg.VecVirtual {
	x := XMM()
	r := GP32()
	MOVWLZX(m, r)
	VMOVD(r, x)
	VCVTPH2PS(x, x)
	return x
}

// Transpose8 reduces eight vectors v(0..7) of sixteen int16 into one
// vector whose int32 lane k holds the exact sum of the lanes of v(k). v is
// called in order, so that only a few vectors are live at a time. With
// narrow, the first two levels add in int16 (the caller guarantees that
// every sum of four lanes of one v(k) fits); otherwise each v(k) is
// widened to int32 first. ones holds sixteen int16 1s.
//
// Each level pairs vectors with two blends, one in-lane shuffle and one
// add (VPHADDD is much slower on Zen 3), so that lane i of the result
// holds partial sums of one input only.
func Transpose8(ones reg.VecVirtual, narrow bool, v func(k int) reg.VecVirtual) reg.VecVirtual {
	add := VPADDD
	if narrow {
		add = VPADDW
	}
	// pair(a, b) = {a_0+a_1, b_0+b_1, a_2+a_3, b_2+b_3, ...} at the
	// granularity of mask (dwords 0xaa, swapped by pshufd 0xb1; qwords
	// 0xcc, swapped by pshufd 0x4e).
	pair := func(a, b reg.VecVirtual, mask, swap uint8) reg.VecVirtual {
		t := YMM()
		VPBLENDD(U8(mask), b, a, t) // {a_0, b_1, a_2, b_3, ...}
		VPBLENDD(U8(mask), a, b, b) // {b_0, a_1, b_2, a_3, ...}
		VPSHUFD(U8(swap), b, b)     // {a_1, b_0, a_3, b_2, ...}
		add(b, t, t)
		return t
	}
	get := func(k int) reg.VecVirtual {
		x := v(k)
		if !narrow {
			VPMADDWD(ones, x, x)
		}
		return x
	}
	quad := func(k int) reg.VecVirtual {
		ab := pair(get(k), get(k+1), 0xaa, 0xb1)
		cd := pair(get(k+2), get(k+3), 0xaa, 0xb1)
		h := pair(ab, cd, 0xcc, 0x4e) // {k, k+1, k+2, k+3} per half
		if narrow {
			VPMADDWD(ones, h, h)
		}
		return h
	}
	a := quad(0)
	b := quad(4)
	t := YMM()
	VPERM2I128(U8(0x21), b, a, t) // {a.hi, b.lo}
	VPBLENDD(U8(0xf0), b, a, a)   // {a.lo, b.hi}
	VPADDD(t, a, a)
	return a
}

// Q6KQuant returns the unsigned quants (< 64) of chunk c (c < 4) of one
// 128-quant half of a Q6_K block: the low (c < 2) or high nibble of
// ql[c%2], with bits 2c and 2c+1 of qh as bits 4 and 5. nib holds 0x0f
// bytes and x30 0x30 bytes.
func Q6KQuant(c int, ql [2]reg.VecVirtual, qh, nib, x30 reg.VecVirtual) reg.VecVirtual {
	x := YMM()
	if c < 2 {
		VPAND(nib, ql[c], x)
	} else {
		VPSRLW(U8(4), ql[c-2], x)
		VPAND(nib, x, x)
	}
	hb := YMM()
	switch c {
	case 0:
		VPSLLW(U8(4), qh, hb)
		VPAND(x30, hb, hb)
	case 1:
		VPSLLW(U8(2), qh, hb)
		VPAND(x30, hb, hb)
	case 2:
		VPAND(x30, qh, hb)
	case 3:
		VPSRLW(U8(2), qh, hb)
		VPAND(x30, hb, hb)
	}
	VPOR(hb, x, x)
	return x
}
