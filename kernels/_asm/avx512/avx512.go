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
