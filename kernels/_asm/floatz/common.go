package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"

	"github.com/stratanet/strata/kernels/_asm/avx512"
)

// The row kernels' software prefetch distances, in bytes of weights ahead
// of the loop's position (past the end of the row: the next row of the
// matrix): into L1 (PREFETCHT0) and, further, into L2 (PREFETCHT1). Best on
// Sapphire Rapids for F16 matrices streamed from memory (measured
// interleaved, 1 and 2 threads): about 15% over the L1 prefetch alone,
// which leaves too few lines in flight for one core's bandwidth; from
// huge pages, as a shard's weights are, 1.5 and 4 KiB were 2-3% above 1
// and 6 KiB.
const (
	rowPrefetch   = 1536
	rowPrefetchL2 = 4096
)

// rowPrefetchLoop emits the row kernels' prefetches of the n bytes of
// weights that the loop's iteration at base reads, rowPrefetch ahead into
// L1 and rowPrefetchL2 ahead into L2.
func rowPrefetchLoop(base reg.Register, n int) {
	prefetch(base, n, rowPrefetch)
	for o := 0; o < n; o += 64 {
		PREFETCHT1(Mem{Base: base, Disp: rowPrefetchL2 + o})
	}
}

// The shared helpers of kernels/_asm/avx2 under this generator's names.
var (
	loopLabel = avx2.LoopLabel
	prefetch  = avx2.Prefetch
	loadF16   = avx2.LoadF16
)

// cZero is 64 zero bytes.
var cZero Mem

func declareConstants() {
	cZero = avx2.BytesConst("floatzzero", make([]byte, 64))
}

// zero clears v (an XMM or a ZMM) by a load of zeros: the EVEX forms of
// the xor idioms (VPXORD) are not zeroing idioms to avo, whose liveness
// would then keep v live from the function's entry, and VEX cannot encode
// X16..X31.
func zero(v reg.VecVirtual) {
	if v.Size() == 16 {
		VMOVSS(cZero, v)
		return
	}
	VMOVUPS(cZero, v)
}

// reduce32 returns an XMM whose lane 0 holds the package doc's reduction
// of the 32 lane accumulators a0 (acc[0..15]) and a1 (acc[16..31]):
//
//	r_j  = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24])   for j < 8
//	head = ((r0+r4) + (r2+r6)) + ((r1+r5) + (r3+r7))
//
// a0 and a1 are clobbered.
func reduce32(a0, a1 reg.VecVirtual) reg.Register {
	h0, h1 := YMM(), YMM()
	VEXTRACTF64X4(U8(1), a0, h0)
	VADDPS(h0, a0.AsY(), h0) // acc[j] + acc[j+8]
	VEXTRACTF64X4(U8(1), a1, h1)
	VADDPS(h1, a1.AsY(), h1) // acc[j+16] + acc[j+24]
	VADDPS(h1, h0, h0)       // r_j
	return tree8(h0)
}

// tree8 returns an XMM whose lane 0 holds the package doc's fixed tree
// ((r0+r4) + (r2+r6)) + ((r1+r5) + (r3+r7)) of the eight lanes r of the
// YMM h0, which is clobbered.
func tree8(h0 reg.VecVirtual) reg.Register { return avx512.HSumF32(h0) }

// strided addresses item i (a row or a token) at offset off: items 3k,
// 3k+1, 3k+2 from base[k], plus 0, 1 or 2 times stride.
func strided(base []reg.Register, stride reg.Register, i, off int) Mem {
	m := Mem{Base: base[i/3], Disp: off}
	if i%3 > 0 {
		m.Index, m.Scale = stride, uint8(i%3)
	}
	return m
}

// bases returns the base registers of strided for k items at p with the
// given stride: p, p+3*stride, p+6*stride, ...
func bases(p, stride reg.Register, k int) []reg.Register {
	b := []reg.Register{p}
	for i := 3; i < k; i += 3 {
		r := GP64()
		LEAQ(Mem{Base: b[len(b)-1], Index: stride, Scale: 2}, r)
		ADDQ(stride, r)
		b = append(b, r)
	}
	return b
}
