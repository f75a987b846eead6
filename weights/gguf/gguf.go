// Package gguf reads and writes GGUF files, the model format of llama.cpp.
//
// A GGUF file (versions 2 and 3, little-endian) is: the magic "GGUF"; a
// uint32 version; a uint64 tensor count; a uint64 metadata count; the
// metadata entries (key string, uint32 value type, value); the tensor infos
// (name string, uint32 dimension count, uint64 dimensions innermost first,
// uint32 ggml type, uint64 data offset); padding to the alignment
// (`general.alignment`, default 32); then the tensor data, each tensor at its
// offset from the start of the data section. A string is a uint64 byte
// length and the bytes; an array is a uint32 element type, a uint64 count and
// the elements.
//
// Open maps the file into memory and validates every count, length, type,
// dimension and offset before it is used: nothing is allocated from an
// unchecked length, and tensors are returned as zero-copy views of the
// mapping. Every validation failure wraps one of the sentinel errors below,
// so callers test with errors.Is.
package gguf

import (
	"errors"
	"fmt"

	"github.com/stratanet/strata/weights/quant"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when `general.alignment` is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// Limits that ggml itself enforces.
const (
	// MaxDims is the most dimensions a tensor may have.
	MaxDims = 4
	// MaxNameLen is the longest tensor name in bytes (ggml's GGML_MAX_NAME-1).
	MaxNameLen = 63
	// maxDepth bounds the nesting of arrays of arrays.
	maxDepth = 8
)

// Sentinel errors. Every error from Open or Parse wraps exactly one of these.
var (
	// ErrBadMagic: the file does not start with "GGUF".
	ErrBadMagic = errors.New("gguf: bad magic (not a GGUF file)")
	// ErrVersion: the version is not 2 or 3.
	ErrVersion = errors.New("gguf: unsupported version")
	// ErrTruncated: the file ends inside the header, metadata, tensor
	// infos or a tensor's data.
	ErrTruncated = errors.New("gguf: truncated file")
	// ErrLimit: a count or length is larger than the file could hold.
	ErrLimit = errors.New("gguf: count or length out of range")
	// ErrCorrupt: a malformed field (unknown value type, bad bool, duplicate
	// key or tensor name, bad alignment, array nesting too deep).
	ErrCorrupt = errors.New("gguf: corrupt file")
	// ErrTensorType: a tensor has a type id that ggml does not define.
	ErrTensorType = errors.New("gguf: unknown tensor type")
	// ErrDims: a tensor has too many, negative or overflowing dimensions,
	// or a row that is not a whole number of blocks.
	ErrDims = errors.New("gguf: bad tensor dimensions")
	// ErrBounds: a tensor's data lies outside the file or is misaligned.
	ErrBounds = errors.New("gguf: tensor data out of bounds")
	// ErrOverlap: two tensors' data overlap.
	ErrOverlap = errors.New("gguf: tensor data overlap")
	// ErrNoTensor: a tensor looked up by name is not in the file.
	ErrNoTensor = errors.New("gguf: no such tensor")
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	Type quant.Type
	// Dims are the dimensions, innermost (contiguous) first, as ggml's ne.
	Dims []int64
	// Offset is the position of the data relative to the data section.
	Offset uint64
	// Size is the size of the data in bytes.
	Size int64
}

// Elements returns the number of elements of the tensor.
func (ti *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range ti.Dims {
		n *= d
	}
	return n
}

// String describes the tensor as "name type [d0 d1 ...]".
func (ti *TensorInfo) String() string {
	return fmt.Sprintf("%s %s %v", ti.Name, ti.Type, ti.Dims)
}

// tensorSize validates dims for type t and returns the byte size.
func tensorSize(t quant.Type, dims []int64) (int64, error) {
	if !t.Known() {
		return 0, fmt.Errorf("%w: %d", ErrTensorType, uint32(t))
	}
	if len(dims) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions (max %d)", ErrDims, len(dims), MaxDims)
	}
	const maxInt = int64(^uint64(0) >> 1)
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension %d", ErrDims, d)
		}
		if d != 0 && n > maxInt/d {
			return 0, fmt.Errorf("%w: element count overflows in %v", ErrDims, dims)
		}
		n *= d
	}
	row := int64(1)
	if len(dims) > 0 {
		row = dims[0]
	}
	if row%int64(t.BlockSize()) != 0 {
		return 0, fmt.Errorf("%w: row of %d elements is not a whole number of %s blocks (%d)", ErrDims, row, t, t.BlockSize())
	}
	blocks := n / int64(t.BlockSize())
	if blocks > maxInt/int64(t.TypeSize()) {
		return 0, fmt.Errorf("%w: byte size overflows in %v", ErrDims, dims)
	}
	return blocks * int64(t.TypeSize()), nil
}

// pad rounds n up to a multiple of align (a power of two).
func pad(n, align uint64) uint64 { return (n + align - 1) &^ (align - 1) }
