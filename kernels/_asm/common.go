package main

import (
	"encoding/binary"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// Read-only constants shared by the kernels.
var (
	cOnes16  Mem // 16 × int16 1
	cNib     Mem // 32 × 0x0f
	cEight   Mem // 32 × 0x08
	cHiShift Mem // uint64 shift counts {0, 0, 4, 4}: low nibbles in the low half, high nibbles in the high half
	cXF0     Mem // 32 × 0xf0
	cX10     Mem // 32 × 0x10
	cX30     Mem // 32 × 0x30
	cX20     Mem // 32 × 0x20
	cBitByte Mem // VPSHUFB control: byte i of a broadcast uint32 → byte i/8 of it
	cBitMask Mem // byte i holds bit i%8
	cQ6Shuf  Mem // 4 × 32 bytes: VPSHUFB control: int16 2c ×8 | int16 2c+1 ×8
	cNegLn1  Mem // float32 sign bit in lane 1 of 4
)

func rep(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

func bytesConst(name string, b []byte) Mem {
	if len(b)%8 != 0 {
		panic("bytesConst: length not a multiple of 8")
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < len(b); i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b[i:])))
	}
	return m
}

func declareConstants() {
	ones := make([]byte, 32)
	for i := 0; i < 32; i += 2 {
		ones[i] = 1
	}
	cOnes16 = bytesConst("ones16", ones)
	cNib = bytesConst("nib", rep(0x0f, 32))
	cEight = bytesConst("eight", rep(0x08, 32))
	sh := make([]byte, 32)
	sh[16], sh[24] = 4, 4
	cHiShift = bytesConst("hishift", sh)
	cXF0 = bytesConst("xf0", rep(0xf0, 32))
	cX10 = bytesConst("x10", rep(0x10, 32))
	cX30 = bytesConst("x30", rep(0x30, 32))
	cX20 = bytesConst("x20", rep(0x20, 32))

	bb := make([]byte, 32)
	bm := make([]byte, 32)
	for i := range bb {
		bb[i] = byte(i / 8) // within each 128-bit half the broadcast uint32 is at bytes 0..3
		bm[i] = 1 << (i % 8)
	}
	cBitByte = bytesConst("bitbyte", bb)
	cBitMask = bytesConst("bitmask", bm)

	q6 := make([]byte, 0, 4*32)
	for c := range 4 {
		for _, w := range []int{2 * c, 2*c + 1} {
			for range 8 {
				q6 = append(q6, byte(2*w), byte(2*w+1))
			}
		}
	}
	cQ6Shuf = bytesConst("q6shuf", q6)

	neg := make([]byte, 16)
	neg[7] = 0x80
	cNegLn1 = bytesConst("negln1", neg)
}

// loopLabel places label l at a 32-byte boundary (PCALIGN, which avo does
// not know): the hot loops then sit in as few fetch windows as they can,
// and their speed does not change with the code before them.
func loopLabel(l string) {
	Instruction(&ir.Instruction{Opcode: "PCALIGN", Operands: []Op{U8(32)}})
	Label(l)
}

// Software prefetch distances, in bytes of weights ahead of the loop's
// position (past the end of the row: the next row of the matrix). The
// hardware prefetchers alone leave the quantized kernels well short of the
// memory bandwidth when streaming a matrix larger than the caches; these
// values were best on Zen 3 (measured interleaved, 96 MiB matrices).
const (
	quantPrefetch = 2048
	floatPrefetch = 1024
)

// prefetch asks for the cache lines of the n bytes at base+dist.
func prefetch(base reg.Register, n, dist int) {
	for o := 0; o < n; o += 64 {
		PREFETCHT0(Mem{Base: base, Disp: dist + o})
	}
}

// load copies a constant into a new YMM register.
func load(m Mem) reg.VecVirtual {
	y := YMM()
	VMOVDQU(m, y)
	return y
}

// hsumF32 reduces the eight float32 lanes of acc with the package doc's
// fixed tree ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)) and returns an XMM whose
// lane 0 holds the result. acc is clobbered.
func hsumF32(acc reg.VecVirtual) reg.Register {
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

// hsumI32 returns an XMM whose lane 0 holds the (exact, wrapping) sum of
// the eight int32 lanes of v. v is clobbered.
func hsumI32(v reg.VecVirtual) reg.Register {
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

// gatherF16 converts the eight fp16 values at base+off+k*stride (k < 8) to
// float32 lanes 0..7 of a new YMM.
func gatherF16(base reg.Register, off, stride int) reg.VecVirtual {
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

// loadF16 converts the fp16 value at m to float32 in lane 0 of a new XMM.
func loadF16(m Mem) reg.VecVirtual {
	x := XMM()
	r := GP32()
	MOVWLZX(m, r)
	VMOVD(r, x)
	VCVTPH2PS(x, x)
	return x
}

// transpose8 reduces eight vectors v(0..7) of sixteen int16 into one
// vector whose int32 lane k holds the exact sum of the lanes of v(k). v is
// called in order, so that only a few vectors are live at a time. With
// narrow, the first two levels add in int16 (the caller guarantees that
// every sum of four lanes of one v(k) fits); otherwise each v(k) is
// widened to int32 first. ones holds sixteen int16 1s.
//
// Each level pairs vectors with two blends, one in-lane shuffle and one
// add (VPHADDD is much slower on Zen 3), so that lane i of the result
// holds partial sums of one input only.
func transpose8(ones reg.VecVirtual, narrow bool, v func(k int) reg.VecVirtual) reg.VecVirtual {
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
