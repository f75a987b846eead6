package tensor

import "fmt"

// DType is an element type. Its values are ggml's type ids, as stored in a
// GGUF file, so a DType converts to and from weights/quant.Type by value.
type DType uint32

// The element types. Gaps are ids that ggml has retired.
const (
	F32     DType = 0
	F16     DType = 1
	Q4_0    DType = 2
	Q4_1    DType = 3
	Q5_0    DType = 6
	Q5_1    DType = 7
	Q8_0    DType = 8
	Q8_1    DType = 9
	Q2_K    DType = 10
	Q3_K    DType = 11
	Q4_K    DType = 12
	Q5_K    DType = 13
	Q6_K    DType = 14
	Q8_K    DType = 15
	IQ2_XXS DType = 16
	IQ2_XS  DType = 17
	IQ3_XXS DType = 18
	IQ1_S   DType = 19
	IQ4_NL  DType = 20
	IQ3_S   DType = 21
	IQ2_S   DType = 22
	IQ4_XS  DType = 23
	I8      DType = 24
	I16     DType = 25
	I32     DType = 26
	I64     DType = 27
	F64     DType = 28
	IQ1_M   DType = 29
	BF16    DType = 30
	TQ1_0   DType = 34
	TQ2_0   DType = 35
	MXFP4   DType = 39
	NVFP4   DType = 40
	Q1_0    DType = 41
	Q2_0    DType = 42
)

// geometry is one type's name and block layout: a row of n elements is
// n/block blocks of size bytes.
type geometry struct {
	name  string
	block int // elements per block
	size  int // bytes per block
}

// geometries is indexed by DType; block == 0 marks an unknown id.
var geometries = [...]geometry{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", 32, 18},
	Q4_1:    {"Q4_1", 32, 20},
	Q5_0:    {"Q5_0", 32, 22},
	Q5_1:    {"Q5_1", 32, 24},
	Q8_0:    {"Q8_0", 32, 34},
	Q8_1:    {"Q8_1", 32, 36},
	Q2_K:    {"Q2_K", 256, 84},
	Q3_K:    {"Q3_K", 256, 110},
	Q4_K:    {"Q4_K", 256, 144},
	Q5_K:    {"Q5_K", 256, 176},
	Q6_K:    {"Q6_K", 256, 210},
	Q8_K:    {"Q8_K", 256, 292},
	IQ2_XXS: {"IQ2_XXS", 256, 66},
	IQ2_XS:  {"IQ2_XS", 256, 74},
	IQ3_XXS: {"IQ3_XXS", 256, 98},
	IQ1_S:   {"IQ1_S", 256, 50},
	IQ4_NL:  {"IQ4_NL", 32, 18},
	IQ3_S:   {"IQ3_S", 256, 110},
	IQ2_S:   {"IQ2_S", 256, 82},
	IQ4_XS:  {"IQ4_XS", 256, 136},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", 256, 56},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", 256, 54},
	TQ2_0:   {"TQ2_0", 256, 66},
	MXFP4:   {"MXFP4", 32, 17},
	NVFP4:   {"NVFP4", 64, 36},
	Q1_0:    {"Q1_0", 128, 18},
	Q2_0:    {"Q2_0", 64, 18},
}

// MaxDType is one past the largest DType id this package knows; ids below
// it may still be unknown (retired gaps), see Known.
const MaxDType = DType(len(geometries))

// Known reports whether d is a type id that ggml defines.
func (d DType) Known() bool { return d < MaxDType && geometries[d].block != 0 }

// String returns ggml's name for the type, such as "Q4_K".
func (d DType) String() string {
	if !d.Known() {
		return fmt.Sprintf("dtype(%d)", uint32(d))
	}
	return geometries[d].name
}

// BlockSize is the number of elements in one block: 1 for plain types, 0
// for an unknown id.
func (d DType) BlockSize() int {
	if !d.Known() {
		return 0
	}
	return geometries[d].block
}

// TypeSize is the number of bytes in one block, 0 for an unknown id.
func (d DType) TypeSize() int {
	if !d.Known() {
		return 0
	}
	return geometries[d].size
}

// IsQuantized reports whether d stores its elements in multi-element
// blocks.
func (d DType) IsQuantized() bool { return d.BlockSize() > 1 }

// RowBytes is the number of bytes that n elements of type d occupy. It
// panics if d is unknown or n is negative or not a whole number of blocks.
func (d DType) RowBytes(n int) int {
	bs := d.BlockSize()
	if bs == 0 || n < 0 || n%bs != 0 {
		panic(fmt.Sprintf("tensor: %d elements of %s are not whole blocks", n, d))
	}
	return n / bs * geometries[d].size
}
