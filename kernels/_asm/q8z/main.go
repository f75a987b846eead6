// Command q8z generates kernels/q8z_amd64.s and kernels/q8z_amd64_stubs.go,
// the AVX-512 (F, BW, VL, VNNI) tile kernels of package kernels for the
// Q4_0 weight type against the Q8 activation form, with avo (Q8_0's order
// is another: see kernels/_asm/q8chain.go and kernels/_asm/lanesz).
// Run it through go generate in kernels/ (see q8z_amd64.go); CI
// regenerates and fails on a diff.
//
// A kernel computes nr weight rows against one to eight tokens (one token
// is decode's matrix-vector product). Each group of eight weight blocks is
// transposed once, with word and dword permutations, into four ZMM
// vectors: dword k of the low half of vector p holds quants 8p..8p+3 of
// block k, of the high half quants 8p+4..8p+7, as unsigned bytes (Q4_0's
// nibbles). One VPDPBUSD per 64 bytes then adds
// four products of each block into its own dword, against the tokens'
// quants in kernels.packQ8's layout, and the two halves add up to the
// exact block sums. The offset the unsigned form adds (8 times the
// activation block's quant sum) is taken off by starting each sum at its
// negation, which the activation's packed form carries.
//
// Every output is exactly the row rule of kernels/doc.go: the per-block
// integer dot products are exact, block b's lands in lane b%8 of the
// token's own accumulator, and every float32 operation is the same IEEE
// operation, on the same operands, as in kernels/dot_generic.go.
package main

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"
	"github.com/stratanet/strata/kernels/_asm/avx512"
)

// maxPairs is the most pairs of tokens a pair kernel computes per call:
// the packed activation is laid out in chunks of 2*maxPairs tokens.
const maxPairs = 8

// prefetchDist is the software prefetch distance (into L2) in bytes of
// weights ahead of the pair kernels' loop (into the next rows at a row's
// end). The one-token kernel, which streams weights from memory, asks for
// them twice: into L2 streamL2 bytes ahead and into L1 streamL1 ahead.
// On Sapphire Rapids, from huge pages as a shard's weights are, that is
// 10-15% more bandwidth than L2 alone or L1 alone; 1.5 and 4 KiB were
// 3-5% above 1 and 6 KiB, and 8 KiB into L2 was slower.
const (
	prefetchDist = 4096
	streamL1     = 1536
	streamL2     = 4096
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()
	for _, k := range []*kind{q4_0} {
		tile(1, k)
		for np := 1; np <= maxPairs; np++ {
			pairs(np, k)
		}
	}
	quantizeQ8()
	quantizeQ8K()
	Generate()
}

var (
	cAbs     Mem // float32 sign-clearing mask
	c127     Mem // float32 127
	cM127    Mem // float32 -127
	cNib     Mem // 64 × 0x0f
	cHiShift Mem // uint64 shift counts {0, 0, 4, 4}
	// Q4_0 permutations: the payloads of blocks 0..3 and 4..7, the scales,
	// and the dword transposition into the vectors of quants 0..7 / 8..15.
	cQ4A, cQ4B, cQ4S, cQ4Z0, cQ4Z1 Mem
	// The pair kernels' forms: Q4_0's scales twice (words 8..15 as
	// 0..7), and the dword transpositions that put the same vector of
	// quants in both halves: cQ4D[m] dword m of the blocks of (A, B).
	cQ4S2 Mem
	cQ4D  [4]Mem
)

// bytesOf returns the VPERMT2B control that gathers, for each output word
// i, the two bytes of word ix[i] of the tables.
func bytesOf(ix []int) Mem {
	b := make([]byte, 64)
	for i, v := range ix {
		b[2*i], b[2*i+1] = byte(2*v), byte(2*v+1)
	}
	return b64(b)
}

func dwords(ix []int) Mem {
	b := make([]byte, 64)
	for i, v := range ix {
		b[4*i] = byte(v)
	}
	return b64(b)
}

var nconst int

func b64(b []byte) Mem {
	nconst++
	return avx2.BytesConst(fmt.Sprintf("q8z_%d", nconst), b)
}

func declareConstants() {
	f32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24), 0, 0, 0, 0} }
	cAbs = avx2.BytesConst("q8z_abs", f32(0x7fffffff))
	c127 = avx2.BytesConst("q8z_127", f32(0x42fe0000))
	cM127 = avx2.BytesConst("q8z_m127", f32(0xc2fe0000))
	cNib = avx2.BytesConst("q8z_nib", avx2.Rep(0x0f, 64))
	sh := make([]byte, 32)
	sh[16], sh[24] = 4, 4
	cHiShift = avx2.BytesConst("q8z_hishift", sh)

	// Q4_0: a group is 8 blocks of 18 bytes (2 of scale, 16 of nibbles),
	// loaded as L0 = bytes [0,64), L1 = [64,128), L2 = [80,144). A VPERMT2W
	// of (L0, L1) indexes words 0..63 of the bytes from 0; of (L1, L2)
	// words of L1 below 32 and of L2 from 32.
	var a, b, s []int
	for o := range 32 {
		k, m := o/8, o%8
		a = append(a, 9*k+1+m) // block k's payload word m, from byte 0
		abs := 18*(4+k) + 2 + 2*m
		if abs < 128 {
			b = append(b, (abs-64)/2)
		} else {
			b = append(b, 32+(abs-80)/2)
		}
	}
	for k := range 8 {
		s = append(s, 9*k)
	}
	cQ4A, cQ4B, cQ4S = bytesOf(a), bytesOf(b), bytesOf(s)
	// A holds blocks 0..3 and B blocks 4..7, dword m of a block's payload
	// at dword 4k+m. Z0 = dwords 0 (low half) and 1 (high half) of blocks
	// 0..7, Z1 = dwords 2 and 3.
	z := func(j0 int) Mem {
		var ix []int
		for o := range 16 {
			j, k := j0+o/8, o%8
			if k < 4 {
				ix = append(ix, 4*k+j)
			} else {
				ix = append(ix, 16+4*(k-4)+j)
			}
		}
		return dwords(ix)
	}
	cQ4Z0, cQ4Z1 = z(0), z(2)
	cQ4S2 = bytesOf(append(s, s...))
	for m := range 4 {
		var ix []int
		for o := range 16 {
			if k := o % 8; k < 4 {
				ix = append(ix, 4*k+m)
			} else {
				ix = append(ix, 16+4*(k-4)+m)
			}
		}
		cQ4D[m] = dwords(ix)
	}

}

// kind describes one weight type.
type kind struct {
	name  string
	size  int   // bytes per block
	off   int32 // the unsigned form adds off to each quant
	quant string
	// setup loads the constants that group needs.
	setup func() []reg.VecVirtual
	// group returns the four transposed vectors of the group of eight
	// blocks at w and their scales as eight float32s.
	group func(c []reg.VecVirtual, w reg.Register) ([4]reg.VecVirtual, reg.VecVirtual)
	// groupPair returns, for the group of eight blocks at w, the eight
	// vectors W_j of the pair kernels (dword k of each half: the unsigned
	// quants 4j..4j+3 of block k) and the scales as sixteen float32s
	// (both halves the same). Index vectors come from memory, so that
	// they hold no registers across the loop.
	groupPair func(w reg.Register) ([8]reg.VecVirtual, reg.VecVirtual)
	// blockPair is block without setup's registers.
	blockPair func(w reg.Register) reg.VecVirtual
	// block returns the 32 unsigned quants of the block at w in Q8's
	// order (a YMM).
	block func(c []reg.VecVirtual, w reg.Register) reg.VecVirtual
}

func loadZ(m Mem) reg.VecVirtual {
	z := ZMM()
	VMOVDQU64(m, z)
	return z
}

var q4_0 = &kind{
	name:  "Q4_0",
	size:  18,
	off:   8,
	quant: "int32(wb[2+i%16]>>(4*(i/16))&15) - 8",
	setup: func() []reg.VecVirtual {
		return []reg.VecVirtual{loadZ(cNib), loadZ(cQ4A), loadZ(cQ4B), loadZ(cQ4S), loadZ(cQ4Z0), loadZ(cQ4Z1)}
	},
	group: func(c []reg.VecVirtual, w reg.Register) ([4]reg.VecVirtual, reg.VecVirtual) {
		nib, ia, ib, is, iz0, iz1 := c[0], c[1], c[2], c[3], c[4], c[5]
		l0, l1, l2 := ZMM(), ZMM(), ZMM()
		VMOVDQU64(Mem{Base: w}, l0)
		VMOVDQU64(Mem{Base: w, Disp: 64}, l1)
		VMOVDQU64(Mem{Base: w, Disp: 80}, l2)
		// Where a table is needed again, the index is loaded afresh and
		// overwritten (VPERMI2*), a load rather than a register copy.
		_ = is
		_ = iz0
		sc := loadZ(cQ4S)
		VPERMI2B(l1, l0, sc) // words 0..7: the scales
		VPERMT2B(l1, ia, l0) // A: blocks 0..3
		VPERMT2B(l2, ib, l1) // B: blocks 4..7
		z0 := loadZ(cQ4Z0)
		VPERMI2D(l1, l0, z0)
		VPERMT2D(l1, iz1, l0)
		z1 := l0
		var v [4]reg.VecVirtual
		for i, zz := range []reg.VecVirtual{z0, z1} {
			hi := ZMM()
			VPSRLW(U8(4), zz, hi)
			VPANDD(nib, hi, hi)
			VPANDD(nib, zz, zz)
			v[i], v[2+i] = zz, hi
		}
		f := YMM()
		VCVTPH2PS(sc.AsX(), f)
		return v, f
	},
	groupPair: func(w reg.Register) ([8]reg.VecVirtual, reg.VecVirtual) {
		l0, l1, l2 := ZMM(), ZMM(), ZMM()
		VMOVDQU64(Mem{Base: w}, l0)
		VMOVDQU64(Mem{Base: w, Disp: 64}, l1)
		VMOVDQU64(Mem{Base: w, Disp: 80}, l2)
		sc, a, b := loadZ(cQ4S2), loadZ(cQ4A), loadZ(cQ4B)
		VPERMI2B(l1, l0, sc) // the scales, twice
		VPERMI2B(l1, l0, a)  // A: blocks 0..3
		VPERMI2B(l2, l1, b)  // B: blocks 4..7
		nib := ZMM()
		VPBROADCASTD(cNib, nib)
		var v [8]reg.VecVirtual
		for m := range 4 {
			d := loadZ(cQ4D[m])
			VPERMI2D(b, a, d)
			hi := ZMM()
			VPSRLW(U8(4), d, hi)
			VPANDD(nib, hi, hi)
			VPANDD(nib, d, d)
			v[m], v[4+m] = d, hi
		}
		f := ZMM()
		VCVTPH2PS(sc.AsY(), f)
		return v, f
	},
	block: func(c []reg.VecVirtual, w reg.Register) reg.VecVirtual {
		x := YMM()
		VBROADCASTI128(Mem{Base: w, Disp: 2}, x)
		VPSRLVQ(cHiShift, x, x)
		VPAND(c[0].AsY(), x, x)
		return x
	},
	blockPair: func(w reg.Register) reg.VecVirtual {
		nib := YMM()
		VPBROADCASTD(cNib, nib)
		x := YMM()
		VBROADCASTI128(Mem{Base: w, Disp: 2}, x)
		VPSRLVQ(cHiShift, x, x)
		VPAND(nib, x, x)
		return x
	},
}

func doc(fn string, nt int, k *kind) []string {
	tokens := "tokens"
	if nt == 1 {
		tokens = "token"
	}
	return strings.Split(strings.Join([]string{
		fmt.Sprintf("%s is the %s row rule of the package doc for nr rows of nb", fn, k.name),
		fmt.Sprintf("blocks (row r at w[r*rb:]) against %d %s (AVX-512 F, BW, VL, VNNI), q, d", nt, tokens),
		fmt.Sprintf("and s in the form packQ8Z(%d) writes from the Q8 activations qt, dt and", k.off),
		fmt.Sprintf("st of the tokens. It computes exactly, with w at least (nr-1)*rb+%d*nb", k.size),
		fmt.Sprintf("long, q at least %d*32*nb, d and s at least %d*nb, dst at least", nt, nt),
		fmt.Sprintf("%d*ldd+nr (none of it checked) and every quant in [-127, 127]:", nt-1),
		"",
		"\tfor r := range nr {",
		fmt.Sprintf("\t\tfor t := range %d {", nt),
		"\t\t\tvar acc [8]float32",
		"\t\t\tfor b := range nb {",
		fmt.Sprintf("\t\t\t\twb := w[r*rb+%d*b:]", k.size),
		"\t\t\t\tvar isum int32",
		"\t\t\t\tfor i := range 32 {",
		fmt.Sprintf("\t\t\t\t\tisum += (%s) * int32(qt[t][32*b+i])", k.quant),
		"\t\t\t\t}",
		"\t\t\t\tacc[b%8] = fma32(float32(fp16(wb[0:])*dt[t][b]), float32(isum), acc[b%8])",
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r] = tree8(&acc)",
		"\t\t}",
		"\t}",
		"",
		"The integer sums are taken as the unsigned weight quants (the quant",
		fmt.Sprintf("plus %d) times the activation quants, less %d times the activation", k.off, k.off),
		"block's quant sum, which s carries negated.",
	}, "\n"), "\n")
}

// tile generates the kernel of nt tokens for k. The packed activation of
// the nt tokens (see packQ8Z in q8z_amd64.go) holds, for each whole group
// g of eight blocks and token t, 256 quants in packQ8's layout at
// q[256*(g*nt+t):], eight scales at d[8*(g*nt+t):] and eight negated,
// scaled sums at s[8*(g*nt+t):]; then for each of the last nb%8 blocks
// b and token t, 32 quants at q[256*ng*nt+32*(b*nt+t):], one scale at
// d[8*ng*nt+b*nt+t] and one sum at s[8*ng*nt+b*nt+t].
func tile(nt int, k *kind) {
	fn := fmt.Sprintf("avx512Tile%d%s", nt, k.name)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int)")
	Pragma("noescape")
	Doc(doc(fn, nt, k)...)

	accMem := AllocLocal(nt * 32)
	roww, rowdst, rown := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	rows, end := fn+"_rows", fn+"_end"
	{
		r := Load(Param("w").Base(), GP64())
		MOVQ(r, roww)
		r = Load(Param("dst").Base(), GP64())
		MOVQ(r, rowdst)
		r = Load(Param("nr"), GP64())
		MOVQ(r, rown)
		TESTQ(r, r)
		JZ(LabelRef(end))
	}
	c := k.setup()
	// Masks for loads that write whole registers: dwords 0..7, dword 0.
	k8, k1 := K(), K()
	{
		r := GP32()
		MOVL(U32(0xff), r)
		KMOVW(r, k8)
		MOVL(U32(1), r)
		KMOVW(r, k1)
	}
	Label(rows)

	nb, wp, qp, dp, sp := rowPointers(roww)

	acc := make([]reg.VecVirtual, nt)
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}

	loop, tail, tailLoop, done := fn+"_loop8", fn+"_tail", fn+"_tailloop", fn+"_done"
	n8 := GP64()
	MOVQ(nb, n8)
	SHRQ(U8(3), n8)
	JZ(LabelRef(tail))

	avx2.LoopLabel(loop)
	for o := 0; o < 8*k.size; o += 64 {
		PREFETCHT0(Mem{Base: wp, Disp: streamL1 + o})
		PREFETCHT1(Mem{Base: wp, Disp: streamL2 + o})
	}
	v, dw := k.group(c, wp)
	for t := range nt {
		is := ZMM()
		VMOVDQU32_Z(Mem{Base: sp, Disp: 32 * t}, k8, is) // the upper half zeroed
		for j := range 4 {
			VPDPBUSD(Mem{Base: qp, Disp: 256*t + 64*j}, v[j], is)
		}
		hi := YMM()
		VEXTRACTI64X4(U8(1), is, hi)
		VPADDD(hi, is.AsY(), hi)
		VCVTDQ2PS(hi, hi)
		sc := YMM()
		VMULPS(Mem{Base: dp, Disp: 32 * t}, dw, sc)
		VFMADD231PS(hi, sc, acc[t])
	}
	ADDQ(U32(8*k.size), wp)
	ADDQ(U32(256*nt), qp)
	ADDQ(U32(32*nt), dp)
	ADDQ(U32(32*nt), sp)
	DECQ(n8)
	JNZ(LabelRef(loop))

	Label(tail)
	ANDQ(U32(7), nb)
	JZ(LabelRef(done))
	for t := range nt {
		VMOVUPS(acc[t], accMem.Offset(32*t))
	}
	ap := GP64()
	LEAQ(accMem, ap)

	Label(tailLoop)
	tailBlock(k.block(c, wp), wp, nt, qp, dp, sp, ap, k1)
	ADDQ(U32(k.size), wp)
	ADDQ(U32(32*nt), qp)
	ADDQ(U32(4*nt), dp)
	ADDQ(U32(4*nt), sp)
	ADDQ(U8(4), ap)
	DECQ(nb)
	JNZ(LabelRef(tailLoop))
	for t := range nt {
		VMOVUPS(accMem.Offset(32*t), acc[t])
	}

	Label(done)
	dst := GP64()
	MOVQ(rowdst, dst)
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for t := range nt {
		r := avx512.HSumF32(acc[t])
		VMOVSS(r, Mem{Base: dst})
		if t < nt-1 {
			ADDQ(ldd, dst)
		}
	}
	ADDQ(U8(4), rowdst)
	rb := Load(Param("rb"), GP64())
	ADDQ(rb, roww)
	DECQ(rown)
	JNZ(LabelRef(rows))

	Label(end)
	VZEROUPPER()
	RET()
}

// quantizeQ8 generates avx512QuantizeQ8, the package doc's Q8 activation
// quantization of len(d) blocks of 32 values.
func quantizeQ8() {
	TEXT("avx512QuantizeQ8", NOSPLIT, "func(q []int8, d []float32, s []int32, x []float32)")
	Pragma("noescape")
	Doc(
		"avx512QuantizeQ8 is quantizeQ8 (AVX-512 F, BW, VL): for each of the",
		"len(d) blocks of 32 values at x (q and x at least 32*len(d) long, s at",
		"least len(d); not checked) it computes exactly",
		"",
		"\tamax := absMax32(xb)  // NaNs passed over",
		"\td[b], id := q8Scale(amax)",
		"\tq_i = roundQ8(float32(x_i * id)); s[b] = Σ q_i",
		"",
		"The maximum is exact in any order; amax/127 and 127/amax are single",
		"IEEE divisions, fp16 rounding is VCVTPS2PH's round-to-nearest-even, and",
		"roundQ8 clamps to ±127 before VCVTPS2DQ rounds to nearest even (the",
		"default MXCSR), with NaN products zeroed by a mask.",
	)
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	sp := Load(Param("s").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	abs, p127, m127 := ZMM(), ZMM(), ZMM()
	VBROADCASTSS(cAbs, abs)
	VBROADCASTSS(c127, p127)
	VBROADCASTSS(cM127, m127)
	zero := XMM()
	VXORPS(zero, zero, zero)
	TESTQ(nb, nb)
	JZ(LabelRef("q8z_quant_done"))
	avx2.LoopLabel("q8z_quant_loop")
	x0, x1 := ZMM(), ZMM()
	VMOVUPS(Mem{Base: xp}, x0)
	VMOVUPS(Mem{Base: xp, Disp: 64}, x1)
	// amax: a NaN operand of VMAXPS returns its last (here the
	// accumulator), so NaNs are passed over.
	a0, a1 := ZMM(), ZMM()
	VANDPS(abs, x0, a0)
	VANDPS(abs, x1, a1)
	m := ZMM()
	VXORPS(m, m, m)
	VMAXPS(m, a0, m)
	VMAXPS(m, a1, m)
	h := YMM()
	VEXTRACTF64X4(U8(1), m, h)
	VMAXPS(h, m.AsY(), h)
	hx := XMM()
	VEXTRACTF128(U8(1), h, hx)
	VMAXPS(hx, h.AsX(), hx)
	t := XMM()
	VMOVHLPS(hx, hx, t)
	VMAXPS(t, hx, hx)
	VMOVSHDUP(hx, t)
	VMAXSS(t, hx, hx) // amax in lane 0
	// d = fp16(amax / 127) as float32.
	dv := XMM()
	VDIVSS(p127.AsX(), hx, dv)
	VCVTPS2PH(U8(0), dv, dv)
	VCVTPH2PS(dv, dv)
	VMOVSS(dv, Mem{Base: dp})
	// id = 127 / amax, or 0 when amax == 0.
	id := XMM()
	VDIVSS(hx, p127.AsX(), id)
	nz := XMM()
	VCMPSS(U8(4), zero, hx, nz) // amax != 0
	VANDPS(nz, id, id)
	idb := ZMM()
	VBROADCASTSS(id, idb)
	sum := ZMM()
	for i, x := range []reg.VecVirtual{x0, x1} {
		f := ZMM()
		VMULPS(idb, x, f)
		ord := K()
		VCMPPS(U8(7), f, f, ord) // not NaN
		VMAXPS(m127, f, f)
		VMINPS(p127, f, f)
		r := ZMM()
		VCVTPS2DQ_Z(f, ord, r)
		VPMOVDB(r, Mem{Base: qp, Disp: 16 * i})
		if i == 0 {
			sum = r
		} else {
			VPADDD(r, sum, sum)
		}
	}
	sy := YMM()
	VEXTRACTI64X4(U8(1), sum, sy)
	VPADDD(sy, sum.AsY(), sy)
	r := avx512.HSumI32(sy)
	VMOVD(r, Mem{Base: sp})
	ADDQ(U8(32), qp)
	ADDQ(U8(4), dp)
	ADDQ(U8(4), sp)
	ADDQ(U32(128), xp)
	DECQ(nb)
	JNZ(LabelRef("q8z_quant_loop"))
	Label("q8z_quant_done")
	VZEROUPPER()
	RET()
}

// pairs generates the kernel of np pairs of tokens for k. Both tokens of
// a pair share each multiply: a ZMM holds the pair's quants for the same
// eight blocks (the first token in the low half, the second in the high
// half) against weights repeated in both halves, so every lane of the
// integer sum, of its conversion and of the fused multiply-add belongs to
// one output, the low half the first token's accumulator and the high
// half the second's. The packed activation of the 2*np tokens (see
// packQ8Z) holds, for each whole group g of eight blocks and pair i, 512
// quants at q[512*(g*np+i):] (for j < 8, the first token's 32 quants of
// packQ8's vector j, then the second's), sixteen scales at
// d[16*(g*np+i):] and sixteen negated, scaled sums at s[16*(g*np+i):]
// (the first token's eight, then the second's); then for each of the last
// nb%8 blocks b and token t, 32 quants at q[512*ng*np+32*(2*np*b+t):], one
// scale at d[16*ng*np+2*np*b+t] and one sum at s[16*ng*np+2*np*b+t].
func pairs(np int, k *kind) {
	nt := 2 * np
	fn := fmt.Sprintf("avx512Pairs%d%s", np, k.name)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int, st []float32, flags int)")
	Pragma("noescape")
	Doc(append(doc(fn, nt, k),
		"",
		"A row's blocks may come in several calls, in order, each with its own",
		"slices of w, q, d and s: st holds the accumulators between calls, the",
		fmt.Sprintf("%d float32s of row r at st[%d*r:] (token t's acc at 8*t), nr*%d in all.", 8*nt, 8*nt, 8*nt),
		"With flags&1 the accumulators start from st rather than at zero; with",
		"flags&2 the call is the row's last and writes dst, otherwise it writes",
		"the accumulators back to st.")...)

	accMem := AllocLocal(nt * 32)
	roww, rowdst, rown, rowst := AllocLocal(8), AllocLocal(8), AllocLocal(8), AllocLocal(8)
	rows, end := fn+"_rows", fn+"_end"
	{
		r := Load(Param("w").Base(), GP64())
		MOVQ(r, roww)
		r = Load(Param("dst").Base(), GP64())
		MOVQ(r, rowdst)
		r = Load(Param("st").Base(), GP64())
		MOVQ(r, rowst)
		r = Load(Param("nr"), GP64())
		MOVQ(r, rown)
		TESTQ(r, r)
		JZ(LabelRef(end))
	}
	k1 := K()
	{
		r := GP32()
		MOVL(U32(1), r)
		KMOVW(r, k1)
	}
	Label(rows)

	nb, wp, qp, dp, sp := rowPointers(roww)

	acc := make([]reg.VecVirtual, np)
	for i := range acc {
		acc[i] = ZMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	{
		f := Load(Param("flags"), GP64())
		TESTQ(U32(1), f)
		JZ(LabelRef(fn + "_fresh"))
		stp := GP64()
		MOVQ(rowst, stp)
		for i := range acc {
			VMOVUPS(Mem{Base: stp, Disp: 64 * i}, acc[i])
		}
		Label(fn + "_fresh")
	}

	loop, tail, tailLoop, done := fn+"_loop8", fn+"_tail", fn+"_tailloop", fn+"_done"
	n8 := GP64()
	MOVQ(nb, n8)
	SHRQ(U8(3), n8)
	JZ(LabelRef(tail))

	avx2.LoopLabel(loop)
	for o := 0; o < 8*k.size; o += 64 {
		PREFETCHT1(Mem{Base: wp, Disp: prefetchDist + o})
	}
	v, dw := k.groupPair(wp)
	// The pairs' chains of multiplies interleaved, j by j, so that each
	// multiply's input was computed several instructions before and few
	// instructions wait in the scheduler.
	is := make([]reg.VecVirtual, np)
	for i := range np {
		is[i] = ZMM()
		VMOVDQU32(Mem{Base: sp, Disp: 64 * i}, is[i])
	}
	for j := range 8 {
		for i := range np {
			VPDPBUSD(Mem{Base: qp, Disp: 512*i + 64*j}, v[j], is[i])
		}
	}
	for i := range np {
		VCVTDQ2PS(is[i], is[i])
		sc := ZMM()
		VMULPS(Mem{Base: dp, Disp: 64 * i}, dw, sc)
		VFMADD231PS(is[i], sc, acc[i])
	}
	ADDQ(U32(8*k.size), wp)
	ADDQ(U32(512*np), qp)
	ADDQ(U32(64*np), dp)
	ADDQ(U32(64*np), sp)
	DECQ(n8)
	JNZ(LabelRef(loop))

	Label(tail)
	ANDQ(U32(7), nb)
	JZ(LabelRef(done))
	for i := range np {
		VMOVUPS(acc[i], accMem.Offset(64*i)) // token 2i at 64i, 2i+1 at 64i+32
	}
	ap := GP64()
	LEAQ(accMem, ap)

	Label(tailLoop)
	tailBlock(k.blockPair(wp), wp, nt, qp, dp, sp, ap, k1)
	ADDQ(U32(k.size), wp)
	ADDQ(U32(32*nt), qp)
	ADDQ(U32(4*nt), dp)
	ADDQ(U32(4*nt), sp)
	ADDQ(U8(4), ap)
	DECQ(nb)
	JNZ(LabelRef(tailLoop))
	for i := range np {
		VMOVUPS(accMem.Offset(64*i), acc[i])
	}

	Label(done)
	{
		f := Load(Param("flags"), GP64())
		TESTQ(U32(2), f)
		JNZ(LabelRef(fn + "_final"))
		stp := GP64()
		MOVQ(rowst, stp)
		for i := range acc {
			VMOVUPS(acc[i], Mem{Base: stp, Disp: 64 * i})
		}
		JMP(LabelRef(fn + "_next"))
		Label(fn + "_final")
	}
	dst := GP64()
	MOVQ(rowdst, dst)
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for i := range np {
		hi := YMM()
		VEXTRACTF64X4(U8(1), acc[i], hi)
		for u, y := range []reg.VecVirtual{acc[i].AsY().(reg.VecVirtual), hi} {
			r := avx512.HSumF32(y)
			VMOVSS(r, Mem{Base: dst})
			if 2*i+u < nt-1 {
				ADDQ(ldd, dst)
			}
		}
	}
	Label(fn + "_next")
	ADDQ(U8(4), rowdst)
	ADDQ(U32(64*np), rowst)
	rb := Load(Param("rb"), GP64())
	ADDQ(rb, roww)
	DECQ(rown)
	JNZ(LabelRef(rows))

	Label(end)
	VZEROUPPER()
	RET()
}

// quantizeQ8K generates avx512QuantizeQ8K, the package doc's Q8K
// activation quantization of len(d) blocks of 256 values.
func quantizeQ8K() {
	TEXT("avx512QuantizeQ8K", NOSPLIT, "func(q []int8, d []float32, bsums []int16, x []float32)")
	Pragma("noescape")
	Doc(
		"avx512QuantizeQ8K is quantizeQ8K (AVX-512 F, BW, VL): for each of the",
		"len(d) blocks of 256 values at x (q and x at least 256*len(d) long,",
		"bsums at least 16*len(d); not checked) it computes exactly",
		"",
		"\\tmx := signedMax32(xb) // the first of largest magnitude; NaNs passed over",
		"\\tiscale := -127 / mx    // 0, and d = 0, when mx == 0",
		"\\tq_i = roundQ8(float32(iscale * x_i)); d[b] = 1 / iscale",
		"\\tbsums[16*b+g] = Σ q_i over group g",
		"",
		"The largest magnitude is an exact maximum; the first element that has",
		"it is found by comparing each vector of sixteen with it in order.",
	)
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	gp := Load(Param("bsums").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	abs, p127, m127 := ZMM(), ZMM(), ZMM()
	VBROADCASTSS(cAbs, abs)
	VBROADCASTSS(c127, p127)
	VBROADCASTSS(cM127, m127)
	TESTQ(nb, nb)
	JZ(LabelRef("q8z_quantk_done"))
	avx2.LoopLabel("q8z_quantk_loop")
	// amax over the 16 vectors of the block.
	m := ZMM()
	VXORPS(m, m, m)
	for v := range 16 {
		a := ZMM()
		VANDPS(Mem{Base: xp, Disp: 64 * v}, abs, a)
		VMAXPS(m, a, m) // a NaN a returns m: passed over
	}
	h := YMM()
	VEXTRACTF64X4(U8(1), m, h)
	VMAXPS(h, m.AsY(), h)
	hx := XMM()
	VEXTRACTF128(U8(1), h, hx)
	VMAXPS(hx, h.AsX(), hx)
	t := XMM()
	VMOVHLPS(hx, hx, t)
	VMAXPS(t, hx, hx)
	VMOVSHDUP(hx, t)
	VMAXSS(t, hx, hx)
	// iscale and d, both 0 for a block of zeros (amax == 0).
	is, dv := XMM(), XMM()
	VXORPS(is, is, is)
	VXORPS(dv, dv, dv)
	zero := XMM()
	VXORPS(zero, zero, zero)
	VUCOMISS(zero, hx)
	JE(LabelRef("q8z_quantk_scaled"))
	// mx: the first element whose magnitude is amax.
	amax := ZMM()
	VBROADCASTSS(hx, amax)
	idx := GP64()
	XORQ(idx, idx)
	Label("q8z_quantk_find")
	{
		a := ZMM()
		VANDPS(Mem{Base: xp, Disp: 0, Index: idx, Scale: 4}, abs, a)
		eq := K()
		VCMPPS(U8(0), amax, a, eq)
		r := GP32()
		KMOVW(eq, r)
		TESTL(r, r)
		JNZ(LabelRef("q8z_quantk_found"))
		ADDQ(U8(16), idx)
		JMP(LabelRef("q8z_quantk_find"))
		Label("q8z_quantk_found")
		TZCNTL(r, r)
		ADDQ(r.As64(), idx)
	}
	mx := XMM()
	VMOVSS(Mem{Base: xp, Index: idx, Scale: 4}, mx)
	VMOVSS(cM127, is)
	VDIVSS(mx, is, is) // -127 / mx
	one := GP32()
	MOVL(U32(0x3f800000), one)
	VMOVD(one, dv)
	VDIVSS(is, dv, dv) // 1 / iscale
	Label("q8z_quantk_scaled")
	VMOVSS(dv, Mem{Base: dp})
	isb := ZMM()
	VBROADCASTSS(is, isb)
	for g := range 16 {
		f := ZMM()
		VMULPS(Mem{Base: xp, Disp: 64 * g}, isb, f)
		ord := K()
		VCMPPS(U8(7), f, f, ord) // not NaN
		VMAXPS(m127, f, f)
		VMINPS(p127, f, f)
		r := ZMM()
		VCVTPS2DQ_Z(f, ord, r)
		VPMOVDB(r, Mem{Base: qp, Disp: 16 * g})
		y := YMM()
		VEXTRACTI64X4(U8(1), r, y)
		VPADDD(y, r.AsY(), y)
		sx := avx512.HSumI32(y)
		VPEXTRW(U8(0), sx, Mem{Base: gp, Disp: 2 * g})
	}
	ADDQ(U32(256), qp)
	ADDQ(U8(4), dp)
	ADDQ(U8(32), gp)
	ADDQ(U32(1024), xp)
	DECQ(nb)
	JNZ(LabelRef("q8z_quantk_loop"))
	Label("q8z_quantk_done")
	VZEROUPPER()
	RET()
}

// tailBlock is one of the last nb%8 blocks, at w with its 32 unsigned
// quants in x, against nt tokens: token t's quants at qp+32t, scale at
// dp+4t and negated, scaled sum at sp+4t; its product goes with one fused
// multiply-add into lane b%8 of token t's accumulator, kept at ap+32t
// (ap already advanced to the lane). k1 masks dword 0.
func tailBlock(x reg.VecVirtual, w reg.Register, nt int, qp, dp, sp, ap reg.Register, k1 reg.Register) {
	h := avx2.LoadF16(Mem{Base: w})
	for t := range nt {
		is := YMM()
		VMOVDQU32_Z(Mem{Base: sp, Disp: 4 * t}, k1, is) // lane 0; the rest zeroed
		VPDPBUSD(Mem{Base: qp, Disp: 32 * t}, x, is)
		r := avx512.HSumI32(is)
		VCVTDQ2PS(r, r)
		sc := XMM()
		VMULSS(Mem{Base: dp, Disp: 4 * t}, h, sc)
		a := XMM()
		VMOVSS(Mem{Base: ap, Disp: 32 * t}, a)
		VFMADD231SS(r, sc, a)
		VMOVSS(a, Mem{Base: ap, Disp: 32 * t})
	}
}

// rowPointers loads, at the start of a row, the block count and the
// pointers the kernels walk: the row's weights (kept at roww) and the
// activation's quants, scales and sums.
func rowPointers(roww Mem) (nb, wp, qp, dp, sp reg.Register) {
	nb = Load(Param("nb"), GP64())
	wp = GP64()
	MOVQ(roww, wp)
	qp = Load(Param("q").Base(), GP64())
	dp = Load(Param("d").Base(), GP64())
	sp = Load(Param("s").Base(), GP64())
	return nb, wp, qp, dp, sp
}
