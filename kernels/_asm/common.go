package main

import (
	. "github.com/mmcloughlin/avo/operand"

	"github.com/stratanet/strata/kernels/_asm/avx2"
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

// Software prefetch distances, in bytes of weights ahead of the loop's
// position (past the end of the row: the next row of the matrix). The
// hardware prefetchers alone leave the quantized kernels well short of the
// memory bandwidth when streaming a matrix larger than the caches; these
// values were best on Zen 3 (measured interleaved, 96 MiB matrices).
const (
	quantPrefetch = 2048
	floatPrefetch = 1024
)

// The shared helpers of kernels/_asm/avx2 under this generator's names.
var (
	rep        = avx2.Rep
	bytesConst = avx2.BytesConst
	loopLabel  = avx2.LoopLabel
	prefetch   = avx2.Prefetch
	load       = avx2.LoadConst
	hsumF32    = avx2.HSumF32
	hsumI32    = avx2.HSumI32
	gatherF16  = avx2.GatherF16
	loadF16    = avx2.LoadF16
	transpose8 = avx2.Transpose8
)
