package kernels_test

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/weights/quant"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

// TestMatMulGeneric runs the conformance suite on the generic path, named
// explicitly so that $STRATA_KERNELS does not change what it tests.
func TestMatMulGeneric(t *testing.T) {
	kerneltest.TestMatMul(t, kernels.Generic, kerneltest.PoolEngine)
}

// TestMatMulNilPool checks that an Engine without a pool computes on the
// calling goroutine with the same results.
func TestMatMulNilPool(t *testing.T) {
	kerneltest.TestMatMul(t, kernels.Generic, func(tb testing.TB, p kernels.Path, threads int) *kernels.Engine {
		if p == kernels.Generic && threads == 1 {
			return kerneltest.PoolEngine(tb, p, threads)
		}
		e, err := kernels.NewEngine(p, nil)
		if err != nil {
			tb.Fatalf("NewEngine(%s, nil) = %v", p, err)
		}
		return e
	})
}

// TestMatMulPaths runs the conformance suite on every other path that this
// CPU and build support.
func TestMatMulPaths(t *testing.T) {
	for _, p := range []kernels.Path{kernels.AVX2, kernels.AVX512, kernels.AMX} {
		t.Run(p.String(), func(t *testing.T) {
			if !p.Supported() {
				t.Skipf("%s is not supported by this CPU or build", p)
			}
			kerneltest.TestMatMul(t, p, kerneltest.PoolEngine)
		})
	}
}

// TestMatMulGolden pins the bits of 3-token products for every weight type
// (activation quantization, row kernels and the dequantizing fallback
// included), so that a change of order or a compiler fusing what the
// source rounds (GOAMD64=v3 permits it) shows up even where the reference
// would change with it.
func TestMatMulGolden(t *testing.T) {
	want := map[quant.Type]uint64{
		quant.F32:  0x61bc755f3ef54823,
		quant.F16:  0xffcac0ddc9c89952,
		quant.BF16: 0x9330ecf2aea198e5,
		quant.Q4_0: 0xd296d8a664eb9eda,
		quant.Q4_1: 0x7bfff2d7745c55ca,
		quant.Q5_0: 0x1e80f194be2c56d0,
		quant.Q5_1: 0x28c34aa6e3ff2b3c,
		quant.Q8_0: 0xe12cc71f6a224b41,
		quant.Q8_1: 0x9568e0d72d06f1b8,
		quant.Q2_K: 0x7e3abab1cd06b3d9,
		quant.Q3_K: 0x1e1aa4b56f921135,
		quant.Q4_K: 0xd12f91628e62b5e0,
		quant.Q5_K: 0xc428cad7662ac37e,
		quant.Q6_K: 0x679a9c7b2f8dc4d0,
		quant.Q8_K: 0x4fbcdd684217d897,
	}
	e, err := kernels.NewEngine(kernels.Generic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range kerneltest.MatMulTypes {
		t.Run(typ.String(), func(t *testing.T) {
			const rows, tok = 13, 3
			cols := 2 * max(typ.BlockSize(), 256)
			r := rand.New(rand.NewPCG(uint64(typ), 2))
			vals := make([]float32, rows*cols)
			for i := range vals {
				vals[i] = float32(math.Ldexp(r.NormFloat64(), -r.IntN(8)))
			}
			rb, _ := typ.RowSize(int64(cols))
			data := make([]byte, rows*int(rb))
			if err := quant.Quantize(typ, data, vals); err != nil {
				t.Fatal(err)
			}
			m, err := kernels.NewMatrix(typ, rows, cols, data)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, tok*cols)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			dst := make([]float32, tok*rows)
			if err := e.MatMul(dst, m, x, tok); err != nil {
				t.Fatal(err)
			}
			h := fnv.New64a()
			for _, v := range dst {
				binary.Write(h, binary.LittleEndian, math.Float32bits(v))
			}
			if got := h.Sum64(); got != want[typ] {
				t.Errorf("hash of MatMul(%s %d×%d, %d tokens) = %#x, want %#x", typ, rows, cols, tok, got, want[typ])
			}
		})
	}
}
