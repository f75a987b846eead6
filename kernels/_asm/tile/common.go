package main

import (
	"encoding/binary"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The helpers below are copies of those of the row kernels' generator
// (kernels/_asm/common.go, legacy.go), so that the two generators stay
// independent: a change there does not change the tile kernels' code.

// Read-only constants of the tile kernels (file-local symbols of
// tile_amd64.s).
var (
	cOnes16  Mem // 16 × int16 1
	cNib     Mem // 32 × 0x0f
	cHiShift Mem // uint64 shift counts {0, 0, 4, 4}: low nibbles in the low half, high nibbles in the high half
	cNegLn1  Mem // float32 sign bit in lane 1 of 4
	cX30     Mem // 32 × 0x30
	cQ6Shuf  Mem // 4 × 32 bytes: VPSHUFB control: int16 2c ×8 | int16 2c+1 ×8
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
	cOnes16 = bytesConst("tileones16", ones)
	cNib = bytesConst("tilenib", rep(0x0f, 32))
	sh := make([]byte, 32)
	sh[16], sh[24] = 4, 4
	cHiShift = bytesConst("tilehishift", sh)

	neg := make([]byte, 16)
	neg[7] = 0x80
	cNegLn1 = bytesConst("tilenegln1", neg)
	cX30 = bytesConst("tilex30", rep(0x30, 32))

	q6 := make([]byte, 0, 4*32)
	for c := range 4 {
		for _, w := range []int{2 * c, 2*c + 1} {
			for range 8 {
				q6 = append(q6, byte(2*w), byte(2*w+1))
			}
		}
	}
	cQ6Shuf = bytesConst("tileq6shuf", q6)
}

// loopLabel places label l at a 32-byte boundary (PCALIGN, which avo does
// not know).
func loopLabel(l string) {
	Instruction(&ir.Instruction{Opcode: "PCALIGN", Operands: []Op{U8(32)}})
	Label(l)
}

// quantPrefetch is the software prefetch distance, in bytes of weights
// ahead of the loop's position, as in the row kernels.
const quantPrefetch = 2048

// prefetch asks for the cache lines of the n bytes at base+dist.
func prefetch(base reg.Register, n, dist int) {
	for o := 0; o < n; o += 64 {
		PREFETCHT0(Mem{Base: base, Disp: dist + o})
	}
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
