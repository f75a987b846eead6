package kernels

import "github.com/stratanet/strata/weights/quant"

// TileKernels is the table of one path's tile kernels: a matrix product of
// nr weight rows with nt tokens, every output computed exactly as the row
// rule (package doc) computes it, the same bits as the row kernel for that
// (row, token), but with each weight block unpacked once for several
// tokens. An entry whose Run is nil (and a path without a table) falls
// back to calling the row kernel once per (row, token); so does a product
// of one token (see pickTiles).
type TileKernels struct {
	Q4_0, Q8_0 TileQ8
	Q4_K, Q6_K TileQ8K
	F16        TileFloat
	// Q4_0Batch, Q8_0Batch, Q4_KBatch and Q6_KBatch, when set, replace
	// Q4_0, Q8_0, Q4_K and Q6_K in products of at least their MinTokens
	// tokens (prefill).
	Q4_0Batch, Q8_0Batch TileQ8
	Q4_KBatch, Q6_KBatch TileQ8K
}

// TileQ8 is a tile kernel against the Q8 activation form. Run writes
// dst[t*ldd+r] for r < nr and t < nt: the dot of row r (at w[r*rb:]) with
// token t's activation, q[t*n:(t+1)*n], d[t*nb:(t+1)*nb] and
// s[t*nb:(t+1)*nb] where n = len(q)/nt = 32*nb and nb = len(d)/nt; s holds
// the activation's exact block sums (Q8.S). With Pack, Run reads the
// activation in the form Pack writes rather than in Q8's.
type TileQ8 struct {
	Run func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, sc []byte)
	// Scratch, when set, is the size in bytes of the scratch memory sc
	// that Run needs for rows of nb blocks (one buffer per thread; nil
	// otherwise).
	Scratch func(nb int) int
	// Pack, when set, rewrites the activation of nt tokens (q, d and s as
	// Run's doc says) into the form Run reads, in pq, pd and ps of the
	// same lengths as q, d and s, none of them overlapping the inputs.
	Pack func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int)
	// PackScale, when set, is how many times len(q) the pq that Pack
	// writes is (1 otherwise), per token: token t's part starts at
	// PackScale*t*len(q)/nt.
	PackScale int
	// Single: Run is faster than the row kernel for one token too, so
	// matrix-vector products (decode) use it.
	Single bool
	// Rows, when set, is the number of rows a worker takes at a time
	// (tileRows otherwise).
	Rows int
	// MinTokens is, for a batch kernel (TileKernels.Q4_0Batch, ...), the
	// fewest tokens of a product it serves.
	MinTokens int
}

// TileQ8K is a tile kernel against the Q8K activation form. Run writes
// dst[t*ldd+r] for r < nr and t < nt: the dot of row r (at w[r*rb:]) with
// token t's activation, q[t*n:(t+1)*n], d[t*nb:(t+1)*nb] and
// bsums[t*16*nb:(t+1)*16*nb] where n = len(q)/nt = 256*nb and nb =
// len(d)/nt; bsums holds the exact sums of q's 16-element groups
// (Q8K.BSums).
type TileQ8K struct {
	Run func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, sc []byte)
	// Scratch, when set, is the size in bytes of the scratch memory sc
	// that Run needs for rows of nb (256-element) blocks, as
	// TileQ8.Scratch.
	Scratch func(nb int) int
	// Single, Rows and MinTokens: as TileQ8's.
	Single    bool
	Rows      int
	MinTokens int
}

// TileFloat is a tile kernel of float weights against float32
// activations. Run writes dst[t*ldd+r] for r < nr and t < nt: the dot of
// row r (at w[r*rb:]) with token t's activation x[t*n:(t+1)*n], n =
// len(x)/nt.
type TileFloat struct {
	Run func(dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int, sc []byte)
	// Scratch, when set, is the size in bytes of the scratch memory sc
	// that Run needs for rows of n elements, as TileQ8.Scratch.
	Scratch func(n int) int
	// Single: as TileQ8.Single.
	Single bool
}

// pathTiles holds the tile kernels of this build's paths, filled by init
// functions (tile_amd64.go) and never changed afterwards.
var pathTiles = map[Path]*TileKernels{}

// registerTiles installs path p's tile kernels. Called only from init
// functions.
func registerTiles(p Path, k TileKernels) {
	pathTiles[p] = &k
}

// tiles returns path p's tile kernels, or nil when it has none.
func (p Path) tiles() *TileKernels {
	return pathTiles[p]
}

// pickTiles sets t's tile kernel for its weight type from table k (nil:
// none). A single token has no unpacked weights to share: it keeps the row
// kernels, which are faster there (decode), unless the tile kernel says
// it is faster for one token too (Single).
func (t *matTask) pickTiles(k *TileKernels) {
	if k == nil {
		return
	}
	one := t.nTok < 2
	switch t.w.Type {
	case quant.Q4_0, quant.Q8_0:
		t.tq = k.Q4_0
		if t.w.Type == quant.Q8_0 {
			t.tq = k.Q8_0
		}
		b := k.Q4_0Batch
		if t.w.Type == quant.Q8_0 {
			b = k.Q8_0Batch
		}
		if b.Run != nil && t.nTok >= b.MinTokens {
			t.tq = b
		}
		if one && !t.tq.Single {
			t.tq = TileQ8{}
		}
	case quant.Q4_K, quant.Q6_K:
		t.tk = k.Q4_K
		if t.w.Type == quant.Q6_K {
			t.tk = k.Q6_K
		}
		b := k.Q4_KBatch
		if t.w.Type == quant.Q6_K {
			b = k.Q6_KBatch
		}
		if b.Run != nil && t.nTok >= b.MinTokens {
			t.tk = b
		}
		if one && !t.tk.Single {
			t.tk = TileQ8K{}
		}
	case quant.F16:
		t.tf = k.F16
		if one && !t.tf.Single {
			t.tf = TileFloat{}
		}
	}
}

// runTile computes a tile of nr rows at w (see tileQ8) with t's tile
// kernel, and reports false when t has none.
func (t *matTask) runTile(dst []float32, ldd int, w []byte, nr int, sc []byte) bool {
	switch {
	case t.tq.Run != nil:
		t.tq.Run(dst, ldd, w, t.rb, nr, t.q, t.d, t.s, t.nTok, sc)
	case t.tk.Run != nil:
		t.tk.Run(dst, ldd, w, t.rb, nr, t.q, t.d, t.bsums, t.nTok, sc)
	case t.tf.Run != nil:
		t.tf.Run(dst, ldd, w, t.rb, nr, t.x, t.nTok, sc)
	default:
		return false
	}
	return true
}

// packQ8 writes to dst the tile layout of the quants q of nt tokens of
// equal length n = len(q)/nt (a multiple of 32): within each token, the
// whole groups of eight blocks (256 quants from 256g) become eight
// 32-byte vectors, vector j holding quants 4j..4j+3 of block k at bytes
// 4k..4k+3,
//
//	dst[256g + 32j + 4k + i] = q[256g + 32k + 4j + i]   (j, k < 8, i < 4)
//
// and the last (n/32)%8 blocks are copied as they are. A tile kernel then
// puts four products of every block of a group in that block's own lane
// with one multiply per 32 bytes. dst must not overlap q.
func packQ8(dst, q []int8, nt int) {
	if nt == 0 {
		return
	}
	n := len(q) / nt
	whole := n / 256 * 256
	for t := range nt {
		src, out := q[t*n:(t+1)*n], dst[t*n:(t+1)*n]
		for g := 0; g < whole; g += 256 {
			for j := range 8 {
				for k := range 8 {
					copy(out[g+32*j+4*k:g+32*j+4*k+4], src[g+32*k+4*j:g+32*k+4*j+4])
				}
			}
		}
		copy(out[whole:], src[whole:])
	}
}

// packQ8Tile is the TileQ8.Pack of the tile kernels that read the quants
// in packQ8's layout and d and s as they are.
func packQ8Tile(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int) {
	packQ8(pq, q, nt)
	copy(pd, d)
	copy(ps, s)
}

// tileActivation returns the activation that t's tile kernel reads: q, d
// and s themselves, or the form its Pack writes, in the Engine's scratch.
func (e *Engine) tileActivation(tq TileQ8, q []int8, d []float32, s []int32, nt int) ([]int8, []float32, []int32) {
	if tq.Pack == nil {
		return q, d, s
	}
	e.q8p = grow(e.q8p, max(1, tq.PackScale)*len(q))
	e.d8p = grow(e.d8p, len(d))
	e.s8p = grow(e.s8p, len(s))
	if e.pool == nil || nt <= packChunk {
		tq.Pack(e.q8p, e.d8p, e.s8p, q, d, s, nt)
		return e.q8p, e.d8p, e.s8p
	}
	// Chunks of packChunk tokens pack independently (every Pack's form is
	// laid out in chunks that divide it), so the pool can share them out.
	e.prep = prepTask{e: e, pack: tq.Pack, qs: max(1, tq.PackScale), q: q, d: d, s: s, nt: nt}
	nc := (nt + packChunk - 1) / packChunk
	e.pool.Parallel(nc, (nc+e.pool.Threads()-1)/e.pool.Threads(), &e.prep)
	e.prep = prepTask{}
	return e.q8p, e.d8p, e.s8p
}

// packChunk is the number of tokens of a TileQ8.Pack that may be packed
// apart from the others: a multiple of every Pack's own chunk (1 for
// packQ8Tile, q8zChunk for the AVX-512 forms).
const packChunk = 16
