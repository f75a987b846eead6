// Package quant is the one home of ggml's tensor element and block formats:
// their type ids (as stored in GGUF), block geometry, and conversion between
// them and float32.
//
// Layouts follow ggml byte for byte (little-endian): a tensor row of n
// elements of a block type is n/BlockSize blocks of TypeSize bytes each.
// Dequantization is bit-exact with ggml's reference (scalar) dequantizers.
// Quantization follows ggml's reference quantizers (quantize_row_*_ref), so
// llama.cpp reads what this package writes and agrees with its values.
//
// The package is used by weights/gguf (tensor sizes), by kernels/ (the
// kernels read these blocks directly) and by activation compression in relay/.
package quant

import (
	"errors"
	"fmt"
)

// Type is a ggml tensor type id, as stored in a GGUF tensor info.
type Type uint32

// The ggml type ids. Gaps are ids that ggml has retired; a GGUF file that
// uses one is rejected as ErrUnknownType.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
	Q2_0    Type = 42
)

// QK_K is the number of elements in a super-block of the K-quant formats.
const QK_K = 256

// Errors returned by this package.
var (
	// ErrUnknownType is returned for a type id that ggml does not define.
	ErrUnknownType = errors.New("quant: unknown tensor type")
	// ErrUnsupported is returned when a conversion is asked of a type that
	// this package does not implement (for example quantizing to IQ2_XXS).
	ErrUnsupported = errors.New("quant: conversion not supported for this type")
	// ErrLength is returned when buffer lengths do not match whole blocks.
	ErrLength = errors.New("quant: buffer length does not match block geometry")
)

// DequantFunc converts whole blocks: len(src) is a multiple of the type's
// TypeSize and len(dst) equals the matching element count. Callers
// (Dequantize) validate the lengths.
type DequantFunc func(dst []float32, src []byte)

// QuantFunc converts whole blocks: len(src) is a multiple of the type's
// BlockSize and len(dst) equals the matching byte count.
type QuantFunc func(dst []byte, src []float32)

type traits struct {
	name      string
	blockSize int // elements per block
	typeSize  int // bytes per block
	dequant   DequantFunc
	quant     QuantFunc
}

// table is indexed by Type. Geometry is fixed here; conversion functions are
// filled in by init functions of this package (register) and never change
// afterwards.
var table = [...]traits{
	F32:     {name: "F32", blockSize: 1, typeSize: 4},
	F16:     {name: "F16", blockSize: 1, typeSize: 2},
	Q4_0:    {name: "Q4_0", blockSize: 32, typeSize: 18},
	Q4_1:    {name: "Q4_1", blockSize: 32, typeSize: 20},
	Q5_0:    {name: "Q5_0", blockSize: 32, typeSize: 22},
	Q5_1:    {name: "Q5_1", blockSize: 32, typeSize: 24},
	Q8_0:    {name: "Q8_0", blockSize: 32, typeSize: 34},
	Q8_1:    {name: "Q8_1", blockSize: 32, typeSize: 36},
	Q2_K:    {name: "Q2_K", blockSize: QK_K, typeSize: 84},
	Q3_K:    {name: "Q3_K", blockSize: QK_K, typeSize: 110},
	Q4_K:    {name: "Q4_K", blockSize: QK_K, typeSize: 144},
	Q5_K:    {name: "Q5_K", blockSize: QK_K, typeSize: 176},
	Q6_K:    {name: "Q6_K", blockSize: QK_K, typeSize: 210},
	Q8_K:    {name: "Q8_K", blockSize: QK_K, typeSize: 292},
	IQ2_XXS: {name: "IQ2_XXS", blockSize: QK_K, typeSize: 66},
	IQ2_XS:  {name: "IQ2_XS", blockSize: QK_K, typeSize: 74},
	IQ3_XXS: {name: "IQ3_XXS", blockSize: QK_K, typeSize: 98},
	IQ1_S:   {name: "IQ1_S", blockSize: QK_K, typeSize: 50},
	IQ4_NL:  {name: "IQ4_NL", blockSize: 32, typeSize: 18},
	IQ3_S:   {name: "IQ3_S", blockSize: QK_K, typeSize: 110},
	IQ2_S:   {name: "IQ2_S", blockSize: QK_K, typeSize: 82},
	IQ4_XS:  {name: "IQ4_XS", blockSize: QK_K, typeSize: 136},
	I8:      {name: "I8", blockSize: 1, typeSize: 1},
	I16:     {name: "I16", blockSize: 1, typeSize: 2},
	I32:     {name: "I32", blockSize: 1, typeSize: 4},
	I64:     {name: "I64", blockSize: 1, typeSize: 8},
	F64:     {name: "F64", blockSize: 1, typeSize: 8},
	IQ1_M:   {name: "IQ1_M", blockSize: QK_K, typeSize: 56},
	BF16:    {name: "BF16", blockSize: 1, typeSize: 2},
	TQ1_0:   {name: "TQ1_0", blockSize: QK_K, typeSize: 54},
	TQ2_0:   {name: "TQ2_0", blockSize: QK_K, typeSize: 66},
	MXFP4:   {name: "MXFP4", blockSize: 32, typeSize: 17},
	NVFP4:   {name: "NVFP4", blockSize: 64, typeSize: 36},
	Q1_0:    {name: "Q1_0", blockSize: 128, typeSize: 18},
	Q2_0:    {name: "Q2_0", blockSize: 64, typeSize: 18},
}

// register installs the conversion functions of a type. It is called only
// from init functions of this package.
func register(t Type, dq DequantFunc, q QuantFunc) {
	if !t.Known() {
		panic(fmt.Sprintf("quant: register of unknown type %d", t))
	}
	if dq != nil {
		table[t].dequant = dq
	}
	if q != nil {
		table[t].quant = q
	}
}

// Known reports whether t is a type id that ggml defines.
func (t Type) Known() bool {
	return int(t) < len(table) && table[t].blockSize != 0
}

// String returns ggml's name for the type, such as "Q4_K".
func (t Type) String() string {
	if !t.Known() {
		return fmt.Sprintf("type(%d)", uint32(t))
	}
	return table[t].name
}

// BlockSize is the number of elements in one block (1 for plain types).
// It is 0 for an unknown type.
func (t Type) BlockSize() int {
	if !t.Known() {
		return 0
	}
	return table[t].blockSize
}

// TypeSize is the number of bytes in one block. It is 0 for an unknown type.
func (t Type) TypeSize() int {
	if !t.Known() {
		return 0
	}
	return table[t].typeSize
}

// IsQuantized reports whether t stores elements in multi-element blocks.
func (t Type) IsQuantized() bool { return t.BlockSize() > 1 }

// CanDequantize reports whether Dequantize supports t.
func (t Type) CanDequantize() bool { return t.Known() && table[t].dequant != nil }

// CanQuantize reports whether Quantize supports t.
func (t Type) CanQuantize() bool { return t.Known() && table[t].quant != nil }

// RowSize returns the number of bytes that n elements of type t occupy, or an
// error if t is unknown or n is not a whole number of blocks.
func (t Type) RowSize(n int64) (int64, error) {
	if !t.Known() {
		return 0, fmt.Errorf("%w: %d", ErrUnknownType, uint32(t))
	}
	bs := int64(table[t].blockSize)
	if n < 0 || n%bs != 0 {
		return 0, fmt.Errorf("%w: %d elements is not a multiple of %s block size %d", ErrLength, n, t, bs)
	}
	return n / bs * int64(table[t].typeSize), nil
}

// ParseType returns the type named s (case-insensitive, as String prints it).
func ParseType(s string) (Type, error) {
	for i := range table {
		if table[i].blockSize != 0 && equalFold(table[i].name, s) {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownType, s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Dequantize converts the blocks in src to float32 values in dst.
// len(src) must be a whole number of blocks of t and len(dst) the matching
// element count. dst does not share memory with src.
func Dequantize(t Type, dst []float32, src []byte) error {
	if !t.Known() {
		return fmt.Errorf("%w: %d", ErrUnknownType, uint32(t))
	}
	tr := &table[t]
	if tr.dequant == nil {
		return fmt.Errorf("%w: dequantize %s", ErrUnsupported, t)
	}
	if len(src)%tr.typeSize != 0 || len(src)/tr.typeSize*tr.blockSize != len(dst) {
		return fmt.Errorf("%w: %s: %d bytes into %d values", ErrLength, t, len(src), len(dst))
	}
	tr.dequant(dst, src)
	return nil
}

// Quantize converts src to blocks of t in dst, following ggml's reference
// quantizer for t. len(src) must be a whole number of blocks and len(dst)
// the matching byte count.
func Quantize(t Type, dst []byte, src []float32) error {
	if !t.Known() {
		return fmt.Errorf("%w: %d", ErrUnknownType, uint32(t))
	}
	tr := &table[t]
	if tr.quant == nil {
		return fmt.Errorf("%w: quantize to %s", ErrUnsupported, t)
	}
	if len(src)%tr.blockSize != 0 || len(src)/tr.blockSize*tr.typeSize != len(dst) {
		return fmt.Errorf("%w: %s: %d values into %d bytes", ErrLength, t, len(src), len(dst))
	}
	tr.quant(dst, src)
	return nil
}
