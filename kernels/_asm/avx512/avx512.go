// Package avx512 holds the avo helpers that the AVX-512 generators share
// (_asm/q8z, _asm/floatz, _asm/kquantz): the fixed-order horizontal sums
// of kernels/avx2 written with EVEX-encodable instructions only, since
// avo may give an AVX-512 kernel any of the 32 vector registers and VEX
// instructions (VEXTRACTF128, ...) cannot name X16..X31.
package avx512

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// HSumF32 reduces the eight float32 lanes of the YMM acc with the package
// doc's fixed tree ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7)) and returns an XMM
// whose lane 0 holds the result. acc is clobbered.
func HSumF32(acc reg.VecVirtual) reg.Register {
	lo := acc.AsX()
	hi := XMM()
	VEXTRACTF32X4(U8(1), acc, hi)
	VADDPS(hi, lo, lo) // b_j = a_j + a_{j+4}
	t := XMM()
	VMOVHLPS(lo, lo, t) // t0 = b2, t1 = b3
	VADDPS(t, lo, lo)   // c0 = b0 + b2, c1 = b1 + b3
	VMOVSHDUP(lo, t)    // t0 = c1
	VADDSS(t, lo, lo)   // c0 + c1
	return lo
}

// HSumI32 returns an XMM whose lane 0 holds the (exact, wrapping) sum of
// the eight int32 lanes of the YMM v. v is clobbered.
func HSumI32(v reg.VecVirtual) reg.Register {
	x := v.AsX()
	hi := XMM()
	VEXTRACTI32X4(U8(1), v, hi)
	VPADDD(hi, x, x)
	t := XMM()
	VPSHUFD(U8(0x4e), x, t)
	VPADDD(t, x, x)
	VPSHUFD(U8(0xb1), x, t)
	VPADDD(t, x, x)
	return x
}

// LaneTrees reduces k rows of sixteen float32 lane sums kept in memory:
// row m's eight lanes are the ZMMs at acc + i*laneBytes + 64*m (i < 8),
// added with the package doc's fixed tree ((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7));
// row m's result goes to dst under mask, and dst advances by stride after
// each row (dst is clobbered).
func LaneTrees(acc reg.Register, laneBytes, k int, dst, stride reg.Register, mask reg.Register) {
	for m := range k {
		l := func(i int) Mem { return Mem{Base: acc, Disp: i*laneBytes + 64*m} }
		x04, x26, x15, x37 := ZMM(), ZMM(), ZMM(), ZMM()
		VMOVUPS(l(0), x04)
		VADDPS(l(4), x04, x04)
		VMOVUPS(l(2), x26)
		VADDPS(l(6), x26, x26)
		VMOVUPS(l(1), x15)
		VADDPS(l(5), x15, x15)
		VMOVUPS(l(3), x37)
		VADDPS(l(7), x37, x37)
		VADDPS(x26, x04, x04)
		VADDPS(x37, x15, x15)
		VADDPS(x15, x04, x04)
		VMOVUPS(x04, mask, Mem{Base: dst})
		ADDQ(stride, dst)
	}
}
