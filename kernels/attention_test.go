package kernels_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
	"github.com/stratanet/strata/tensor"
	"github.com/stratanet/strata/weights/quant"
)

func TestAttention(t *testing.T) {
	kerneltest.TestAttention(t, new(kernels.Attention).Forward)
}

// TestAttentionFresh checks that a warm Attention and a fresh one agree.
func TestAttentionFresh(t *testing.T) {
	warm := new(kernels.Attention)
	kerneltest.CompareAttention(t, warm.Forward, func(dst, q []float32, k, v kernels.KV, positions []int32, heads, kvHeads, headDim int, scale float32, pool *kernels.Pool) {
		new(kernels.Attention).Forward(dst, q, k, v, positions, heads, kvHeads, headDim, scale, pool)
	})
}

func TestKVFromTensor(t *testing.T) {
	k := tensor.New(tensor.F16, 8, 2, 10) // headDim 8, 2 KV heads, 10 positions
	kv, err := kernels.KVFromTensor(k)
	if err != nil {
		t.Fatalf("KVFromTensor(%v): %v", k, err)
	}
	if kv.Stride != 16 || len(kv.F16) != 160 || kv.F32 != nil {
		t.Errorf("KVFromTensor(%v) = stride %d, %d F16, F32 %v; want 16, 160, nil", k, kv.Stride, len(kv.F16), kv.F32)
	}
	v := tensor.New(tensor.F32, 16, 10)
	if kv, err := kernels.KVFromTensor(v); err != nil || kv.Stride != 16 || len(kv.F32) != 160 {
		t.Errorf("KVFromTensor(%v) = stride %d, %d F32, %v; want 16, 160, nil", v, kv.Stride, len(kv.F32), err)
	}
	if _, err := kernels.KVFromTensor(tensor.New(tensor.Q8_0, 32, 4)); !errors.Is(err, kernels.ErrType) {
		t.Errorf("KVFromTensor(Q8_0) error = %v, want ErrType", err)
	}
	if _, err := kernels.KVFromTensor(v.Slice(0, 0, 8)); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("KVFromTensor(non-contiguous) error = %v, want ErrShape", err)
	}
}

func TestAttentionPanics(t *testing.T) {
	var a kernels.Attention
	k := kernels.KV{F32: make([]float32, 4*8)}
	q := make([]float32, 8)
	for name, f := range map[string]func(){
		"heads not a multiple": func() { a.Forward(q, q, k, k, []int32{0}, 3, 2, 8, 1, nil) },
		"short q":              func() { a.Forward(q, q[:4], k, k, []int32{0}, 1, 1, 8, 1, nil) },
		"position past cache":  func() { a.Forward(q, q, k, k, []int32{4}, 1, 1, 8, 1, nil) },
		"negative position":    func() { a.Forward(q, q, k, k, []int32{-1}, 1, 1, 8, 1, nil) },
		"both cache types": func() {
			a.Forward(q, q, kernels.KV{F32: k.F32, F16: make([]uint16, 32)}, k, []int32{0}, 1, 1, 8, 1, nil)
		},
		"stride under the row": func() { a.Forward(q, q, kernels.KV{F32: k.F32, Stride: 4}, k, []int32{0}, 1, 1, 8, 1, nil) },
		"zero KV heads":        func() { a.Forward(q, q, k, k, []int32{0}, 1, 0, 8, 1, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: did not panic", name)
				}
			}()
			f()
		}()
	}
}

// BenchmarkAttention is one decode step of a 7B-like layer (32 heads, 8 KV
// heads, head size 128) at a context of 1024 and 4096 positions.
func BenchmarkAttention(b *testing.B) {
	const heads, kvHeads, hd = 32, 8, 128
	for _, ctx := range []int{1024, 4096} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("ctx=%d/threads=%d", ctx, threads), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 6))
				k := kernels.KV{F32: kerneltest.RandVec(r, ctx*kvHeads*hd, 1)}
				v := kernels.KV{F32: kerneltest.RandVec(r, ctx*kvHeads*hd, 1)}
				q := kerneltest.RandVec(r, heads*hd, 1)
				dst := make([]float32, len(q))
				pool := kernels.NewPool(threads)
				defer pool.Close()
				p, err := kernels.PathFromEnv()
				if err != nil {
					b.Fatal(err)
				}
				a := kernels.Attention{Path: p}
				pos := []int32{int32(ctx - 1)}
				b.SetBytes(int64(2 * 4 * ctx * kvHeads * hd)) // the K and V read
				b.ReportAllocs()
				for b.Loop() {
					a.Forward(dst, q, k, v, pos, heads, kvHeads, hd, 0.088, pool)
				}
			})
		}
	}
}

// TestTensorDTypesMatchQuant checks that tensor's copy of ggml's type
// table (tensor imports nothing from Strata) agrees with weights/quant's.
func TestTensorDTypesMatchQuant(t *testing.T) {
	for id := range 64 {
		d, q := tensor.DType(id), quant.Type(id)
		if d.Known() != q.Known() || d.BlockSize() != q.BlockSize() || d.TypeSize() != q.TypeSize() || (d.Known() && d.String() != q.String()) {
			t.Errorf("type %d: tensor %s (known %v, block %d, size %d), quant %s (known %v, block %d, size %d)",
				id, d, d.Known(), d.BlockSize(), d.TypeSize(), q, q.Known(), q.BlockSize(), q.TypeSize())
		}
	}
}

// TestAttentionReserveAmortized checks that reserving one more position at
// a time (as a decode loop does) rarely allocates.
func TestAttentionReserveAmortized(t *testing.T) {
	var a kernels.Attention
	n := 1
	allocs := testing.AllocsPerRun(1000, func() {
		a.Reserve(2, n)
		n++
	})
	if allocs > 0.05 {
		t.Errorf("Reserve(2, n+1) allocates %v times per call on average, want amortized O(1/n)", allocs)
	}
}
