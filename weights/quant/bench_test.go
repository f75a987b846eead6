package quant

import (
	"math/rand/v2"
	"testing"
)

// benchInput returns n weight-like float32s (gaussian, scale 0.02).
func benchInput(n int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(0.02 * r.NormFloat64())
	}
	return x
}

// benchBlocks returns n elements of typ: quantized weights where typ has a
// quantizer, random bytes otherwise (which may hold NaN or subnormal scales,
// so such a figure is a rough one).
func benchBlocks(b *testing.B, typ Type, n int) []byte {
	src := make([]byte, n/typ.BlockSize()*typ.TypeSize())
	if typ.CanQuantize() {
		if err := Quantize(typ, src, benchInput(n)); err != nil {
			b.Fatal(err)
		}
		return src
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	return src
}

// BenchmarkDequantize measures every type that has a dequantizer; bytes/s
// counts the quantized input.
func BenchmarkDequantize(b *testing.B) {
	const n = 1 << 20
	for i := range table {
		typ := Type(i)
		if !typ.CanDequantize() {
			continue
		}
		b.Run(typ.String()+"/n=1M", func(b *testing.B) {
			src := benchBlocks(b, typ, n)
			dst := make([]float32, n)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Dequantize(typ, dst, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuantize measures every type that has a quantizer; bytes/s counts
// the float32 input.
func BenchmarkQuantize(b *testing.B) {
	const n = 1 << 18
	for i := range table {
		typ := Type(i)
		if !typ.CanQuantize() {
			continue
		}
		b.Run(typ.String()+"/n=256K", func(b *testing.B) {
			src := benchInput(n)
			dst := make([]byte, n/typ.BlockSize()*typ.TypeSize())
			b.SetBytes(int64(4 * len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Quantize(typ, dst, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
