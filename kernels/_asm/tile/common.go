package main

import (
	. "github.com/mmcloughlin/avo/operand"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

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

// quantPrefetch is the software prefetch distance, in bytes of weights
// ahead of the loop's position, as in the row kernels.
const quantPrefetch = 2048

// The shared helpers of kernels/_asm/avx2 under this generator's names.
var (
	rep        = avx2.Rep
	bytesConst = avx2.BytesConst
	loopLabel  = avx2.LoopLabel
	prefetch   = avx2.Prefetch
	hsumF32    = avx2.HSumF32
	hsumI32    = avx2.HSumI32
	gatherF16  = avx2.GatherF16
	loadF16    = avx2.LoadF16
)
