// Package kernels is Strata's tensor core: matrix products against weights
// of every GGUF type, normalization, rotary embeddings, softmax,
// activations and attention, in generic Go and amd64 assembly (generated
// with avo from kernels/_asm), with a worker pool.
//
// # The determinism contract
//
// Hash-majority verification compares the bytes that replicas produce, so
// every kernel whose output can be hashed follows one canonical order of
// operations, and every implementation (generic Go, AVX2, AVX-512, any
// thread count) produces the same bits. Work is split across threads only
// along outputs, never inside a reduction. Below, fma(a, b, c) is a*b+c
// rounded once to float32; every other operation rounds to float32 after
// each step; float32(i) converts an int32 with round-to-nearest-even.
// Generic Go writes fma with fma32 (an exact float32 fused multiply-add)
// and forces the other roundings with explicit float32(...) conversions so
// that the compiler cannot fuse them.
//
// Activation quantization (the "Q8" and "Q8K" forms, used against
// quantized weights) follows what llama.cpp's CPU backend does, so that
// Strata's logits stay close to llama.cpp's (equal to about 1e-5 until a
// one-ulp difference upstream flips a quant, then within about one
// quantization step). For each
// block of 32 values x (Q8, used by the 32-block types, as ggml's x86
// quantize_row_q8_0):
//
//	amax = max |x_i|                      (NaN inputs are the caller's bug)
//	d    = float32(fp16(amax / 127))      (ggml stores the scale as f16)
//	id   = 127 / amax, or 0 when amax == 0
//	q_i  = roundToNearestEven(x_i * id)   (an int8 in [-127, 127])
//	sum  = Σ q_i
//
// (when 127/amax overflows float32, for a block below about 4e-37, q_i
// saturates to ±127 and the NaN of 0·Inf becomes 0, so every path agrees);
// and for each block of 256 (Q8K, used by the K types, as ggml's
// quantize_row_q8_K_ref), with max the x_i of largest magnitude (the first
// on ties):
//
//	iscale  = -127 / max                  (all zero when max == 0: d = 0, q = 0)
//	q_i     = min(127, roundToNearestEven(iscale * x_i))
//	d       = 1 / iscale
//	bsums_j = Σ q_i over the 16-element group j
//
// Block dot products. An integer dot of a weight block with an activation
// block is exact (int32). For a row of nb blocks, with lane accumulators
// acc[0..7] starting at +0:
//
//	Q4_0, Q5_0 against Q8 (w = dw * qw, qw signed):
//	    isum_b = Σ_i qw_i * q_i
//	    acc[b%8] = fma(dw_b * d_b, float32(isum_b), acc[b%8])
//	Q8_0 against Q8, one accumulator a starting at +0 and every block in
//	order, no tree (llama.cpp's AMX order: see below):
//	    isum_b = Σ_i qw_i * q_i
//	    a = fma(dw_b * d_b, float32(isum_b), a)            the result is a
//	Q4_1, Q5_1 against Q8 (w = dw * qw + mw, qw unsigned):
//	    acc[b%8] = fma(dw_b * d_b, float32(isum_b), acc[b%8])
//	    acc[b%8] = fma(mw_b * d_b, float32(sum_b), acc[b%8])
//	Q4_K, Q5_K against Q8K (w = d*sc_j*qw - dmin*m_j over 32-element
//	sub-blocks j, qw unsigned):
//	    isum_b = Σ_j sc_j * Σ_{i in j} qw_i * q_i
//	    msum_b = Σ_j m_j * (bsums_{2j} + bsums_{2j+1})
//	    acc[b%8] = fma(dw_b * d_b, float32(isum_b), acc[b%8])
//	    acc[b%8] = fma(-(dmin_b * d_b), float32(msum_b), acc[b%8])
//	Q6_K against Q8K (w = d*sc_j*(qw-32) over 16-element sub-blocks):
//	    isum_b = Σ_j sc_j * Σ_{i in j} (qw_i - 32) * q_i
//	    acc[b%8] = fma(dw_b * d_b, float32(isum_b), acc[b%8])
//
// and the row's result is the fixed tree
//
//	((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) + (acc3+acc7))
//
// which is what an 8-lane vector's horizontal sum computes (high half onto
// low half, then pairs, then the last two). (dw_b * d_b is exact: both are
// float16 values.)
//
// Q8_0 follows the order of llama.cpp's AMX build, the one that made
// ../shared/golden (its AMX kernels take every Q8_0 matrix whose rows
// are a multiple of 32, both the batch kernel and the one-token one): with
// it, Strata's logits on the Q8_0 goldens are llama.cpp's to the bit. The
// other orders miss: ggml's vec_dot (eight lanes of four products, the
// order of llama.cpp's builds without AMX) by about 2e-6, and the lane
// rule of the other 32-block types by up to 0.07, where one-ulp
// differences flip activation quants. The other types keep the lane rule,
// which llama.cpp itself does not follow consistently (its AMX and
// repacked kernels differ from its vec_dot).
//
// Float weights (F32, and F16/BF16 converted exactly to float32) against
// float32 activations: 32 lane accumulators over the first n32 = n - n%32
// elements, a sequential tail, then a fixed reduction:
//
//	acc[i%32] = fma(w_i, x_i, acc[i%32])            for i < n32
//	r_j  = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24])   for j < 8
//	head = ((r0+r4) + (r2+r6)) + ((r1+r5) + (r3+r7))
//	t = +0; t = fma(w_i, x_i, t)                    for n32 <= i < n, in order
//	dot  = head + t
//
// Other weight types (Q2_K, Q3_K, ...) are dequantized to float32 and use
// the float rule. A matrix product (many tokens) computes every output with
// exactly the row rule above, so a batch gives the same bits as one token
// at a time: prefill, decode and replay after a failure agree.
//
// The remaining kernels state their own order in their doc comments.
package kernels
