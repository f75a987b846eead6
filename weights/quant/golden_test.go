package quant

// Golden vectors from ggml's reference C code.
//
// testdata/golden holds two files per type T (F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K), written by
// testdata/gen/gen.c (run testdata/gen/gen.sh) against a prebuilt
// libggml-base.so. They are committed; tests never rebuild them.
//
//	T.quant.bin    float32 inputs -> quantize_row_T_ref -> dequantize_row_T
//	T.dequant.bin  random blocks (finite, moderate scales) -> dequantize_row_T
//
// Both share one layout, all little-endian:
//
//	offset size
//	0      4    magic "SQGV"
//	4      4    uint32 version (1)
//	8      4    uint32 ggml type id
//	12     4    uint32 kind: 1 quant, 2 dequant
//	16     4    uint32 n, element count (2048, 8 super-blocks of 256)
//	20     4    uint32 nbytes, bytes of the quantized row (n/BlockSize*TypeSize)
//	24          kind 1 only: float32[n] input
//	            uint8[nbytes] blocks (kind 1: quantize_row_T_ref output)
//	            float32[n] dequantize_row_T output of those blocks
//
// For F16 and BF16 the converters are ggml_fp32_to_fp16_row,
// ggml_fp16_to_fp32_row, ggml_fp32_to_bf16_row_ref and ggml_bf16_to_fp32_row.
// ggml has no dequantize_row_q8_1; for Q8_1 gen.c computes d*q for each
// element, as dequantize_row_q8_0 does, and ignores the sum field s.
//
// The quant inputs are 8 super-blocks: unit gaussian; gaussian of scale 0.02;
// all zeros; gaussian with outliers (50, -30) and a zero block of 32; tiny
// values (1e-6, 1e-20, 1e-39 and small multiples of the smallest subnormal);
// positive only with a constant block; negative only; wide (300 sigma) of both
// signs. Every output is finite, so comparisons of float32 bits do not depend
// on how a CPU propagates NaN.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

const (
	goldenMagic   = "SQGV"
	goldenVersion = 1
	goldenQuant   = 1
	goldenDequant = 2
)

// goldenFile is one decoded file of testdata/golden.
type goldenFile struct {
	typ    Type
	kind   uint32
	input  []float32 // kind goldenQuant only
	blocks []byte
	output []float32
}

func readGolden(path string) (*goldenFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 24 || string(data[:4]) != goldenMagic {
		return nil, fmt.Errorf("%s: bad magic", path)
	}
	le := binary.LittleEndian
	if v := le.Uint32(data[4:]); v != goldenVersion {
		return nil, fmt.Errorf("%s: version %d, want %d", path, v, goldenVersion)
	}
	g := &goldenFile{typ: Type(le.Uint32(data[8:])), kind: le.Uint32(data[12:])}
	n, nbytes := int(le.Uint32(data[16:])), int(le.Uint32(data[20:]))
	if !g.typ.Known() {
		return nil, fmt.Errorf("%s: unknown type %d", path, g.typ)
	}
	if rs, err := g.typ.RowSize(int64(n)); err != nil || rs != int64(nbytes) {
		return nil, fmt.Errorf("%s: %d bytes for %d %s elements", path, nbytes, n, g.typ)
	}
	want := 24 + nbytes + 4*n
	if g.kind == goldenQuant {
		want += 4 * n
	} else if g.kind != goldenDequant {
		return nil, fmt.Errorf("%s: bad kind %d", path, g.kind)
	}
	if len(data) != want {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, len(data), want)
	}
	rest := data[24:]
	floats := func() []float32 {
		f := make([]float32, n)
		for i := range f {
			f[i] = math.Float32frombits(le.Uint32(rest[4*i:]))
		}
		rest = rest[4*n:]
		return f
	}
	if g.kind == goldenQuant {
		g.input = floats()
	}
	g.blocks, rest = rest[:nbytes], rest[nbytes:]
	g.output = floats()
	return g, nil
}

var goldenTypes = []Type{F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K}

func TestGoldenDequantize(t *testing.T) {
	for _, typ := range goldenTypes {
		for _, kind := range []string{"quant", "dequant"} {
			t.Run(typ.String()+"/"+kind, func(t *testing.T) {
				g, err := readGolden(filepath.Join("testdata", "golden", typ.String()+"."+kind+".bin"))
				if err != nil {
					t.Fatal(err)
				}
				if g.typ != typ {
					t.Fatalf("file holds type %v, want %v", g.typ, typ)
				}
				if !typ.CanDequantize() {
					t.Skipf("%v has no dequantizer registered yet", typ)
				}
				got := make([]float32, len(g.output))
				if err := Dequantize(typ, got, g.blocks); err != nil {
					t.Fatalf("Dequantize(%v) = %v", typ, err)
				}
				compareFloatBits(t, fmt.Sprintf("Dequantize(%v)", typ), got, g.output, typ.BlockSize())
			})
		}
	}
}

func TestGoldenQuantize(t *testing.T) {
	for _, typ := range goldenTypes {
		t.Run(typ.String(), func(t *testing.T) {
			g, err := readGolden(filepath.Join("testdata", "golden", typ.String()+".quant.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if !typ.CanQuantize() {
				t.Skipf("%v has no quantizer registered yet", typ)
			}
			got := make([]byte, len(g.blocks))
			if err := Quantize(typ, got, g.input); err != nil {
				t.Fatalf("Quantize(%v) = %v", typ, err)
			}
			if bytes.Equal(got, g.blocks) {
				return
			}
			bs, ts := typ.BlockSize(), typ.TypeSize()
			bad := 0
			for b := 0; b < len(got)/ts; b++ {
				gb, wb := got[b*ts:(b+1)*ts], g.blocks[b*ts:(b+1)*ts]
				if bytes.Equal(gb, wb) {
					continue
				}
				if bad++; bad <= 3 {
					t.Errorf("Quantize(%v, input[%d:%d]) =\n%x\nwant\n%x\ninput %v",
						typ, b*bs, (b+1)*bs, gb, wb, g.input[b*bs:(b+1)*bs])
				}
			}
			t.Errorf("Quantize(%v): %d of %d blocks differ", typ, bad, len(got)/ts)
		})
	}
}

// compareFloatBits reports the first few elements whose bits differ.
func compareFloatBits(t *testing.T, what string, got, want []float32, blockSize int) {
	t.Helper()
	bad := 0
	for i := range want {
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("%s[%d] (block %d) = %g (%#08x), want %g (%#08x)", what, i, i/blockSize,
				got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(want))
	}
}
