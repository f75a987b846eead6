// Command tile generates kernels/tile_amd64.s and
// kernels/tile_amd64_stubs.go, the AVX2 + FMA + F16C multi-token tile
// kernels of package kernels, with avo. Run it through go generate in
// kernels/ (see tile_amd64.go); CI regenerates and fails on a diff.
//
// A tile kernel computes one weight row against one to four tokens: it
// unpacks each group of eight weight blocks once, transposed into the
// layout of the activations' packQ8 form, and dots it with every token's
// activations. Every output is exactly the row rule of kernels/doc.go, the
// same bits as the row kernel for that (row, token): the per-block integer
// dot products are exact, block b's lands in lane b%8 of the token's own
// accumulator, and every float32 operation is the same IEEE operation, on
// the same operands, as in kernels/dot_generic.go. Q8_0's kernels
// (q8_0.go) follow its own row rule, one chain of whole-block dots, and
// read the activations in Q8's layout.
package main

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()

	for nt := 1; nt <= tileTokens; nt++ {
		tileQ4_0(nt)
	}
	for nt := 1; nt <= tileTokens; nt++ {
		tileQ8_0(nt)
	}
	for nt := 1; nt <= tileTokens; nt++ {
		tileQ4K(nt)
	}
	for nt := 1; nt <= tileTokens; nt++ {
		tileQ6K(nt)
	}
	for nt := 1; nt <= floatTokens; nt++ {
		tileF16(nt)
	}

	Generate()
}

// tileTokens is the most tokens a tile kernel computes per call.
const tileTokens = 4

// tileType describes a 32-element weight block type dotted with the Q8
// activation form, several tokens at a time.
type tileType struct {
	name string // ggml's name, as in "Q4_0"
	size int    // bytes per block

	// For the last nb%8 blocks (in Q8's own layout), prep unpacks the
	// weight block at w into the 32 bytes at stash, once for all tokens,
	// and dot returns sixteen int16 whose sum is the exact integer dot
	// product of that block with the 32 activations at q (before sums).
	prep func(w reg.Register, stash Mem)
	dot  func(w reg.Register, stash Mem, q Mem) reg.VecVirtual
	// sums: the block's isum is dot's sum minus 8*s[b] (Q4_0's offset
	// of 8, with s the activation's exact block sums).
	sums bool
	// group puts a group of eight weight blocks at w in the tile layout
	// of the activations (kernels.packQ8) once for all tokens: registers,
	// and what it stores in stash. groupDot then returns a token's eight
	// exact int32 block sums (before sums), in lanes 0..7, from group's
	// result and the token's 256 quants at q(j) (32 at a time).
	group    func(w reg.Register, stash Mem) [8]reg.VecVirtual
	groupDot func(wj [8]reg.VecVirtual, stash Mem, q func(j int) Mem) reg.VecVirtual
	// quant is the Go expression of the weight quant i (0 <= i < 32) of
	// the block wb, as an int32, for the doc comment.
	quant string
}

func tileQ4_0(nt int) {
	tileDot(nt, &tileType{
		name: "Q4_0",
		size: 18,
		prep: func(w reg.Register, stash Mem) {
			// The 32 nibbles, unsigned: byte j's low nibble in lane j,
			// its high nibble in lane 16+j.
			x := YMM()
			VBROADCASTI128(Mem{Base: w, Disp: 2}, x)
			VPSRLVQ(cHiShift, x, x)
			VPAND(cNib, x, x)
			VMOVDQU(x, stash)
		},
		dot: func(w reg.Register, stash Mem, q Mem) reg.VecVirtual {
			x := YMM()
			VMOVDQU(stash, x)
			VPMADDUBSW(q, x, x) // pair sums up to 2*15*127
			return x
		},
		sums:     true,
		group:    packedQ4_0,
		groupDot: packedDotQ4_0,
		quant:    "int32(wb[2+i%16]>>(4*(i/16))&15) - 8",
	})
}

// tileDoc is the Go statement of what the generated function computes.
func tileDoc(fn string, nt int, t *tileType) []string {
	tokens, sums := "tokens", ""
	if nt == 1 {
		tokens = "token"
	}
	if t.sums {
		sums = fmt.Sprintf(", s at least %d*nb with s[b]\nthe exact sum of the 32 quants of block b", nt)
	}
	return strings.Split(strings.Join([]string{
		fmt.Sprintf("%s is the %s row rule of the package doc for nr rows of nb", fn, t.name),
		fmt.Sprintf("blocks (row r at w[r*rb:]) against %d %s (AVX2, FMA, F16C): token t's", nt, tokens),
		"activation is q[32*nb*t:], d[nb*t:]. It computes exactly, with w at least",
		fmt.Sprintf("(nr-1)*rb+%d*nb long, q at least %d*32*nb, d at least %d*nb%s,", t.size, nt, nt, sums),
		fmt.Sprintf("dst at least %d*ldd+nr (none of it checked) and every q[i] in [-127, 127]:", nt-1),
		"",
		"\tfor r := range nr {",
		fmt.Sprintf("\t\tfor t := range %d {", nt),
		"\t\t\tqt, dt := unpackQ8(q[32*nb*t:32*nb*(t+1)]), d[nb*t:]",
		"\t\t\tvar acc [8]float32",
		"\t\t\tfor b := range nb {",
		fmt.Sprintf("\t\t\t\twb := w[r*rb+%d*b:]", t.size),
		"\t\t\t\tvar isum int32",
		"\t\t\t\tfor i := range 32 {",
		fmt.Sprintf("\t\t\t\t\tisum += (%s) * int32(qt[32*b+i])", t.quant),
		"\t\t\t\t}",
		"\t\t\t\tacc[b%8] = fma32(float32(fp16(wb[0:])*dt[b]), float32(isum), acc[b%8])",
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r] = tree8(&acc)",
		"\t\t}",
		"\t}",
		"",
		"where unpackQ8 undoes packQ8: q holds each token's whole groups of",
		"eight blocks in the tile layout. Eight blocks at a time, the weights are",
		"transposed once into that layout, so that one VPMADDUBSW per 32 bytes",
		"puts four products of block k in dword k; the exact int32 sums of",
		"block b then lie in lane b%8 of each token's vector accumulator. The",
		"last nb%8 blocks (in Q8's own layout) use scalar operations on lanes",
		"0..nb%8-1.",
	}, "\n"), "\n")
}

// tokenMem addresses token t's operand at offset off: tokens 0 and 1 from
// base a, tokens 2 and 3 from base b = a + 2*stride.
func tokenMem(a, b, stride reg.Register, t, off int) Mem {
	m := Mem{Base: a, Disp: off}
	if t >= 2 {
		m.Base = b
	}
	if t%2 == 1 {
		m.Index, m.Scale = stride, 1
	}
	return m
}

// transpose4 transposes the dwords of four vectors within each 128-bit
// half: dword m of result r is dword r of y[m].
func transpose4(y [4]reg.VecVirtual) [4]reg.VecVirtual {
	lo01, hi01, lo23, hi23 := YMM(), YMM(), YMM(), YMM()
	VPUNPCKLDQ(y[1], y[0], lo01) // {y0.d0, y1.d0, y0.d1, y1.d1}
	VPUNPCKHDQ(y[1], y[0], hi01) // {y0.d2, y1.d2, y0.d3, y1.d3}
	VPUNPCKLDQ(y[3], y[2], lo23)
	VPUNPCKHDQ(y[3], y[2], hi23)
	var p [4]reg.VecVirtual
	for m := range p {
		p[m] = YMM()
	}
	VPUNPCKLQDQ(lo23, lo01, p[0]) // {y0.d0, y1.d0, y2.d0, y3.d0}
	VPUNPCKHQDQ(lo23, lo01, p[1])
	VPUNPCKLQDQ(hi23, hi01, p[2])
	VPUNPCKHQDQ(hi23, hi01, p[3])
	return p
}

// loadPairs returns four vectors of the 16 bytes at w+off+r*size (low
// half) and w+off+(r+4)*size (high half), r < 4. (A broadcast writes all
// of the register: a write of its low half only would keep it live across
// the loop.)
func loadPairs(w reg.Register, off, size int) [4]reg.VecVirtual {
	var y [4]reg.VecVirtual
	for r := range y {
		y[r] = YMM()
		VBROADCASTI128(Mem{Base: w, Disp: size*r + off}, y[r])
		VINSERTI128(U8(1), Mem{Base: w, Disp: size*(r+4) + off}, y[r], y[r])
	}
	return y
}

// packedQ4_0 returns the eight vectors W_j of the Q4_0 weight group at w
// (eight blocks of 18 bytes) in the tile layout: dword k of W_j holds the
// unsigned quants 4j..4j+3 of block k. Block k's 16 quant bytes hold quants
// 4m..4m+3 (low nibbles) and 16+4m..16+4m+3 (high nibbles) in dword m, so
// a 4×4 transposition of dwords (blocks k and k+4 in the two halves)
// gives, per m, the vector that holds W_m and W_{4+m}.
func packedQ4_0(w reg.Register, _ Mem) [8]reg.VecVirtual {
	p := transpose4(loadPairs(w, 2, 18))
	var wj [8]reg.VecVirtual
	for m := range p {
		hi := YMM()
		VPSRLW(U8(4), p[m], hi)
		VPAND(cNib, hi, hi)
		VPAND(cNib, p[m], p[m])
		wj[m], wj[4+m] = p[m], hi
	}
	return wj
}

// packedDotQ4_0: sixteen int16, each the sum of eight pair sums of one
// block (|.| <= 8*2*15*127 < 2^15), then dword k the unsigned dot of
// block k (the caller subtracts 8 times the block's quant sum).
func packedDotQ4_0(wj [8]reg.VecVirtual, _ Mem, q func(j int) Mem) reg.VecVirtual {
	isum := YMM()
	VPMADDUBSW(q(0), wj[0], isum)
	for j := 1; j < 8; j++ {
		p := YMM()
		VPMADDUBSW(q(j), wj[j], p)
		VPADDW(p, isum, isum)
	}
	VPMADDWD(cOnes16, isum, isum)
	return isum
}

func tileDot(nt int, t *tileType) {
	fn := fmt.Sprintf("avx2Tile%d%s", nt, t.name)
	sig := "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, nb int)"
	if t.sums {
		sig = "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int)"
	}
	TEXT(fn, NOSPLIT, sig)
	Pragma("noescape")
	Doc(tileDoc(fn, nt, t)...)

	stash := AllocLocal(8 * 32)
	accMem := AllocLocal(nt * 32)

	// The loop over rows keeps its state on the stack: the row's weights
	// and outputs, and the rows left.
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
	Label(rows)

	nb := Load(Param("nb"), GP64())
	wp := GP64()
	MOVQ(roww, wp)
	// Token pointers: tokens 0, 1 at qa (qa + qs), tokens 2, 3 at qb (qb + qs).
	qa := Load(Param("q").Base(), GP64())
	qs := GP64()
	MOVQ(nb, qs)
	SHLQ(U8(5), qs) // 32*nb bytes
	da := Load(Param("d").Base(), GP64())
	ds := GP64()
	MOVQ(nb, ds)
	SHLQ(U8(2), ds) // 4*nb bytes, also the stride of s
	var qb, db, sa, sb reg.Register
	if nt > 2 {
		qb, db = GP64(), GP64()
		LEAQ(Mem{Base: qa, Index: qs, Scale: 2}, qb)
		LEAQ(Mem{Base: da, Index: ds, Scale: 2}, db)
	}
	if t.sums {
		sa = Load(Param("s").Base(), GP64())
		if nt > 2 {
			sb = GP64()
			LEAQ(Mem{Base: sa, Index: ds, Scale: 2}, sb)
		}
	}
	// advance moves every token pointer on by n blocks.
	advance := func(n int) {
		ADDQ(U32(32*n), qa)
		ADDQ(U32(4*n), da)
		if t.sums {
			ADDQ(U32(4*n), sa)
		}
		if nt > 2 {
			ADDQ(U32(32*n), qb)
			ADDQ(U32(4*n), db)
			if t.sums {
				ADDQ(U32(4*n), sb)
			}
		}
	}

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

	loopLabel(loop)
	prefetch(wp, 8*t.size, quantPrefetch)
	wj := t.group(wp, stash)
	dw := gatherF16(wp, 0, t.size)
	for tok := range nt {
		isum := t.groupDot(wj, stash, func(j int) Mem { return tokenMem(qa, qb, qs, tok, 32*j) })
		if t.sums {
			sv := YMM()
			VMOVDQU(tokenMem(sa, sb, ds, tok, 0), sv)
			VPSLLD(U8(3), sv, sv)
			VPSUBD(sv, isum, isum)
		}
		VCVTDQ2PS(isum, isum)
		sc := YMM()
		VMULPS(tokenMem(da, db, ds, tok, 0), dw, sc)
		VFMADD231PS(isum, sc, acc[tok])
	}
	ADDQ(U32(8*t.size), wp)
	advance(8)
	DECQ(n8)
	JNZ(LabelRef(loop))

	Label(tail)
	ANDQ(U32(7), nb)
	JZ(LabelRef(done))
	for tok := range nt {
		VMOVUPS(acc[tok], accMem.Offset(32*tok))
	}
	ap := GP64()
	LEAQ(accMem, ap)

	Label(tailLoop)
	t.prep(wp, stash)
	h := loadF16(Mem{Base: wp})
	for tok := range nt {
		p := t.dot(wp, stash, tokenMem(qa, qb, qs, tok, 0))
		VPMADDWD(cOnes16, p, p)
		x := hsumI32(p)
		if t.sums {
			g := GP32()
			MOVL(tokenMem(sa, sb, ds, tok, 0), g)
			SHLL(U8(3), g)
			xs := XMM()
			VMOVD(g, xs)
			VPSUBD(xs, x, x)
		}
		VCVTDQ2PS(x, x)
		sc := XMM()
		VMULSS(tokenMem(da, db, ds, tok, 0), h, sc)
		a := XMM()
		VMOVSS(Mem{Base: ap, Disp: 32 * tok}, a)
		VFMADD231SS(x, sc, a)
		VMOVSS(a, Mem{Base: ap, Disp: 32 * tok})
	}
	ADDQ(U32(t.size), wp)
	advance(1)
	ADDQ(U8(4), ap)
	DECQ(nb)
	JNZ(LabelRef(tailLoop))
	for tok := range nt {
		VMOVUPS(accMem.Offset(32*tok), acc[tok])
	}

	Label(done)
	dst := GP64()
	MOVQ(rowdst, dst)
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for tok := range nt {
		r := hsumF32(acc[tok])
		if tok == 3 {
			ADDQ(ldd, dst)
		}
		m := Mem{Base: dst}
		if tok > 0 {
			m.Index, m.Scale = ldd, 1
			if tok >= 2 {
				m.Scale = 2
			}
		}
		VMOVSS(r, m)
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
