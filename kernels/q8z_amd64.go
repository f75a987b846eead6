//go:build !purego

package kernels

import "fmt"

//go:generate sh -c "cd _asm/q8z && go run . -out ../../q8z_amd64.s -stubs ../../q8z_amd64_stubs.go -pkg kernels"

// The AVX-512 tile kernels of the Q4_0 weight type: nr rows
// against one to eight tokens in assembly generated with avo from
// _asm/q8z (q8z_amd64.s, q8z_amd64_stubs.go), with VPDPBUSD for the
// integer block dots; every output is computed in exactly the package
// doc's canonical order, so that it has the row kernel's bits. They serve
// one token too (decode): a group of eight weight blocks is transposed
// with a few permutations, cheaper than the row kernel's reductions.

// avx512Q8Kernels installs the kernels of _asm/q8z in the AVX-512 path's
// tables (see avx512_amd64.go).
func avx512Q8Kernels(_ *RowKernels, t *TileKernels) {
	t.Q4_0 = TileQ8{Run: tileQ4_0AVX512, Pack: packQ8Z(8), Single: true}
}

// q8zChunk is the most tokens one chunk of the packed form holds: the
// pair kernels take up to q8zChunk/2 pairs per call.
const q8zChunk = 16

// packQ8Z returns the TileQ8.Pack of the AVX-512 kernels whose unsigned
// weight quants are off above the signed ones. The tokens go in chunks of
// up to q8zChunk (tokens c.., starting at c*n quants and c*nb blocks), each
// holding its pairs, laid out for the pair kernels, then its odd token,
// laid out for the one-token kernel (see _asm/q8z for both layouts).
// Every block carries its scale and -off times its quant sum.
func packQ8Z(off int32) func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int) {
	return func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int) {
		if nt == 0 {
			return
		}
		n, nb := len(q)/nt, len(d)/nt
		ng := nb / 8
		for c := 0; c < nt; c += q8zChunk {
			k := min(q8zChunk, nt-c)
			np := k / 2
			oq, od, os := pq[c*n:(c+2*np)*n], pd[c*nb:(c+2*np)*nb], ps[c*nb:(c+2*np)*nb]
			for t := range 2 * np {
				i, u := t/2, t%2
				tq, td, ts := q[(c+t)*n:(c+t+1)*n], d[(c+t)*nb:(c+t+1)*nb], s[(c+t)*nb:(c+t+1)*nb]
				for g := range ng {
					// packQ8's vector j of the group, at 64j+32u of the pair's.
					src, out := tq[256*g:256*(g+1)], oq[512*(g*np+i)+32*u:]
					for j := range 8 {
						for k := range 8 {
							*(*[4]int8)(out[64*j+4*k:]) = *(*[4]int8)(src[32*k+4*j:])
						}
					}
					at := 16*(g*np+i) + 8*u
					copy(od[at:at+8], td[8*g:8*(g+1)])
					for b := range 8 {
						os[at+b] = -off * ts[8*g+b]
					}
				}
				for b := 8 * ng; b < nb; b++ {
					i := 2*np*(b-8*ng) + t
					copy(oq[512*ng*np+32*i:512*ng*np+32*(i+1)], tq[32*b:32*(b+1)])
					od[16*ng*np+i] = td[b]
					os[16*ng*np+i] = -off * ts[b]
				}
			}
			if k%2 == 0 {
				continue
			}
			t := c + 2*np
			tq, td, ts := q[t*n:(t+1)*n], d[t*nb:(t+1)*nb], s[t*nb:(t+1)*nb]
			oq, od, os = pq[t*n:(t+1)*n], pd[t*nb:(t+1)*nb], ps[t*nb:(t+1)*nb]
			for g := range ng {
				packQ8(oq[256*g:256*(g+1)], tq[256*g:256*(g+1)], 1)
				copy(od[8*g:8*(g+1)], td[8*g:8*(g+1)])
				for b := range 8 {
					os[8*g+b] = -off * ts[8*g+b]
				}
			}
			copy(oq[256*ng:], tq[256*ng:])
			for b := 8 * ng; b < nb; b++ {
				od[b] = td[b]
				os[b] = -off * ts[b]
			}
		}
	}
}

type tileZFunc = func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int)

// q8zColumns is the most blocks of a row that a pair kernel takes per
// call: a longer row is done in parts, q8zPartRows rows at a time (their
// accumulators kept between the parts), so that the chunk's activations
// for those blocks, half a KiB a block, stay in L1 while the rows read
// them, rather than being read from L2 once per row.
const (
	q8zColumns  = 64
	q8zPartRows = 4
)

// tileQ4_0AVX512 reads the activation in packQ8Z(8)'s form.
func tileQ4_0AVX512(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, _ []byte) {
	tileZ(avx512Tile1Q4_0, "Q4_0", q4_0Bytes, dst, ldd, w, rb, nr, q, d, s, nt)
}

// tileZ runs the kernels one and the pair kernels (of Q4_0; of blocks of
// size bytes) over
// the tile, a chunk of q8zChunk tokens at a time, slicing every operand to
// what the kernel reads so that a short one panics instead.
func tileZ(one tileZFunc, name string, size int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ok := tileQ8Shape(q, d, s, nt)
	if !ok {
		panic(fmt.Sprintf("kernels: %s tile of %d tokens with len(q) = %d, len(d) = %d, len(s) = %d", name, nt, len(q), len(d), len(s)))
	}
	w = w[:rowsSpan(rb, nr, nb*size)]
	_ = dst[(nt-1)*ldd+nr-1]
	for c := 0; c < nt; c += q8zChunk {
		k := min(q8zChunk, nt-c)
		if np := k / 2; np > 0 {
			qc, dc, sc := q[c*n:(c+2*np)*n], d[c*nb:(c+2*np)*nb], s[c*nb:(c+2*np)*nb]
			pairsZ(np, size, dst[c*ldd:], ldd, w, rb, nr, qc, dc, sc, nb)
		}
		if k%2 == 1 {
			t := c + k - 1
			one(dst[t*ldd:], ldd, w, rb, nr, q[t*n:(t+1)*n], d[t*nb:(t+1)*nb], s[t*nb:(t+1)*nb], nb)
		}
	}
}

// pairsZ runs the Q4_0 pair kernel of np pairs over
// nr rows of nb blocks in the packed layout of _asm/q8z (block group g of
// the pairs at 512*np*g of q and 16*np*g of d and s; the last nb%8 blocks
// after the last group). Rows longer than q8zColumns blocks (and a
// quarter) go in parts.
func pairsZ(np, size int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int) {
	if nb <= q8zColumns+q8zColumns/4 {
		pairsCall(np, dst, ldd, w, rb, nr, q, d, s, nb, nil, 2)
		return
	}
	var st [q8zPartRows * q8zChunk * 8]float32
	for r0 := 0; r0 < nr; r0 += q8zPartRows {
		rows := min(q8zPartRows, nr-r0)
		wr := w[r0*rb:]
		for b0 := 0; ; b0 += q8zColumns {
			cols, flags := q8zColumns, 0
			if b0 > 0 {
				flags |= 1
			}
			if nb-b0 <= q8zColumns+q8zColumns/4 { // no short last part
				cols = nb - b0
				flags |= 2
			}
			pairsCall(np, dst[r0:], ldd, wr[b0*size:], rb, rows, q[512*np*b0/8:], d[16*np*b0/8:], s[16*np*b0/8:], cols, st[:rows*16*np], flags)
			if flags&2 != 0 {
				break
			}
		}
	}
}

// pairsCall calls the pair kernel of np pairs directly (a call through a
// function value would move pairsZ's accumulator state to the heap).
func pairsCall(np int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int, st []float32, flags int) {
	switch {
	case np == 1:
		avx512Pairs1Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 2:
		avx512Pairs2Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 3:
		avx512Pairs3Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 4:
		avx512Pairs4Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 5:
		avx512Pairs5Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 6:
		avx512Pairs6Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 7:
		avx512Pairs7Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	case np == 8:
		avx512Pairs8Q4_0(dst, ldd, w, rb, nr, q, d, s, nb, st, flags)
	default:
		panic(fmt.Sprintf("kernels: no pair kernel of %d pairs", np))
	}
}
