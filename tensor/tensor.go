// Package tensor is Strata's tensor type: an element type with its block
// geometry, a shape of up to four dimensions given innermost first (ggml's
// ne), strides in bytes (ggml's nb), and storage that the tensor owns or
// borrows (a slice of an mmapped GGUF file, a KV cache, a caller's
// []float32).
//
// A row is the innermost dimension: element (i0, i1, i2, i3) lies at byte
// i0/BlockSize*TypeSize + i1*nb1 + i2*nb2 + i3*nb3 of the storage, and the
// elements of one row are contiguous. Views (Slice, Reshape, Row, F32) share
// memory with the tensor they come from; Clone copies.
//
// The package imports nothing else from Strata; its DType values are
// ggml's type ids, the same as weights/quant.Type's.
package tensor

import (
	"errors"
	"fmt"
	"unsafe"
)

// MaxDims is the number of dimensions a tensor has; unused outer ones have
// size 1.
const MaxDims = 4

// Shape is the size of each dimension, innermost first.
type Shape [MaxDims]int

// Len is the number of elements, the product of the sizes.
func (s Shape) Len() int { return s[0] * s[1] * s[2] * s[3] }

// Dims is the number of dimensions up to the last one larger than 1 (at
// least 1).
func (s Shape) Dims() int {
	n := MaxDims
	for n > 1 && s[n-1] == 1 {
		n--
	}
	return n
}

func (s Shape) String() string {
	return fmt.Sprint(s[:s.Dims()])
}

// ErrShape is returned when storage does not match a tensor's type and
// shape.
var ErrShape = errors.New("tensor: storage does not match shape")

// Tensor is a view of n-dimensional data, made by New or a From function
// (the zero value is not a usable tensor). Copying a Tensor copies the
// view, not the data.
type Tensor struct {
	dtype  DType
	shape  Shape
	stride [MaxDims]int // bytes; stride[0] is the block size in bytes
	data   []byte       // from the first element to the end of the storage
	owned  bool
}

// shapeOf validates sizes given innermost first and fills unused outer
// dimensions with 1.
func shapeOf(d DType, sizes []int) (Shape, error) {
	if !d.Known() {
		return Shape{}, fmt.Errorf("%w: unknown dtype %d", ErrShape, uint32(d))
	}
	if len(sizes) == 0 || len(sizes) > MaxDims {
		return Shape{}, fmt.Errorf("%w: %d dimensions (1 to %d)", ErrShape, len(sizes), MaxDims)
	}
	s := Shape{1, 1, 1, 1}
	for i, n := range sizes {
		if n < 0 {
			return Shape{}, fmt.Errorf("%w: negative size %v", ErrShape, sizes)
		}
		s[i] = n
	}
	if bs := d.BlockSize(); s[0]%bs != 0 {
		return Shape{}, fmt.Errorf("%w: row of %d elements is not whole %s blocks of %d", ErrShape, s[0], d, bs)
	}
	return s, nil
}

// contiguousStrides are the strides of a packed tensor of shape s.
func contiguousStrides(d DType, s Shape) [MaxDims]int {
	var nb [MaxDims]int
	nb[0] = d.TypeSize()
	nb[1] = d.RowBytes(s[0])
	nb[2] = nb[1] * s[1]
	nb[3] = nb[2] * s[2]
	return nb
}

// New returns a zeroed tensor of type d and the given sizes (innermost
// first, one to four of them) that owns its storage, contiguous and 8-byte
// aligned. It panics on an invalid shape.
func New(d DType, sizes ...int) *Tensor {
	s, err := shapeOf(d, sizes)
	if err != nil {
		panic(err)
	}
	nb := contiguousStrides(d, s)
	n := nb[3] * s[3]
	words := make([]uint64, (n+7)/8)
	var data []byte
	if n > 0 {
		data = unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)
	}
	return &Tensor{dtype: d, shape: s, stride: nb, data: data, owned: true}
}

// FromBytes returns a contiguous tensor of type d and the given sizes that
// borrows data (for example a slice of an mmapped file): the tensor is
// valid as long as data is. data must hold exactly the tensor's bytes.
func FromBytes(d DType, data []byte, sizes ...int) (*Tensor, error) {
	s, err := shapeOf(d, sizes)
	if err != nil {
		return nil, err
	}
	nb := contiguousStrides(d, s)
	if n := nb[3] * s[3]; len(data) != n {
		return nil, fmt.Errorf("%w: %s %v needs %d bytes, have %d", ErrShape, d, s, n, len(data))
	}
	return &Tensor{dtype: d, shape: s, stride: nb, data: data}, nil
}

// FromFloat32 returns a contiguous F32 tensor that borrows x. It panics if
// len(x) is not the product of the sizes.
func FromFloat32(x []float32, sizes ...int) *Tensor {
	s, err := shapeOf(F32, sizes)
	if err != nil {
		panic(err)
	}
	if s.Len() != len(x) {
		panic(fmt.Sprintf("tensor: FromFloat32: %d values for shape %v", len(x), s))
	}
	return &Tensor{dtype: F32, shape: s, stride: contiguousStrides(F32, s), data: Float32Bytes(x)}
}

// FromUint16 returns a contiguous F16 or BF16 tensor (d) that borrows x,
// the values' bits. It panics if d is not F16 or BF16 or len(x) is not the
// product of the sizes.
func FromUint16(d DType, x []uint16, sizes ...int) *Tensor {
	if d != F16 && d != BF16 {
		panic(fmt.Sprintf("tensor: FromUint16 of %s", d))
	}
	s, err := shapeOf(d, sizes)
	if err != nil {
		panic(err)
	}
	if s.Len() != len(x) {
		panic(fmt.Sprintf("tensor: FromUint16: %d values for shape %v", len(x), s))
	}
	var b []byte
	if len(x) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 2*len(x))
	}
	return &Tensor{dtype: d, shape: s, stride: contiguousStrides(d, s), data: b}
}

// Float32Bytes returns the bytes of x in memory (little-endian on every
// platform Strata runs on); the result shares memory with x.
func Float32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

// DType is the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Shape is the size of each dimension, innermost first.
func (t *Tensor) Shape() Shape { return t.shape }

// Dim is the size of dimension i (0 innermost).
func (t *Tensor) Dim(i int) int { return t.shape[i] }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.shape.Len() }

// Strides are the byte distances between neighbours along each dimension
// (ggml's nb); Strides()[0] is the size of one block.
func (t *Tensor) Strides() [MaxDims]int { return t.stride }

// Owned reports whether the tensor allocated its storage (New, Clone)
// rather than borrowing it.
func (t *Tensor) Owned() bool { return t.owned }

// Rows is the number of rows, the product of the sizes of dimensions 1..3.
func (t *Tensor) Rows() int { return t.shape[1] * t.shape[2] * t.shape[3] }

// RowBytes is the size of one row in bytes.
func (t *Tensor) RowBytes() int { return t.dtype.RowBytes(t.shape[0]) }

// IsContiguous reports whether the elements are packed in order with no
// gaps, so that Bytes covers exactly them.
func (t *Tensor) IsContiguous() bool {
	want := contiguousStrides(t.dtype, t.shape)
	for i := 1; i < MaxDims; i++ {
		// A dimension of size 1 has no neighbours: its stride is free.
		if t.shape[i] != 1 && t.stride[i] != want[i] {
			return false
		}
	}
	return true
}

// Bytes returns the storage of a contiguous tensor, exactly its elements;
// it shares memory with t. It panics if t is not contiguous.
func (t *Tensor) Bytes() []byte {
	if !t.IsContiguous() {
		panic("tensor: Bytes of a non-contiguous tensor")
	}
	n := t.RowBytes() * t.Rows()
	return t.data[:n:n]
}

// rowOffset is the byte offset of row (i1, i2, i3), checked.
func (t *Tensor) rowOffset(i1, i2, i3 int) int {
	if uint(i1) >= uint(t.shape[1]) || uint(i2) >= uint(t.shape[2]) || uint(i3) >= uint(t.shape[3]) {
		panic(fmt.Sprintf("tensor: row (%d, %d, %d) out of range for shape %v", i1, i2, i3, t.shape))
	}
	return i1*t.stride[1] + i2*t.stride[2] + i3*t.stride[3]
}

// Row returns the bytes of row i, counting rows over dimensions 1..3 in
// order (i = i1 + n1*(i2 + n2*i3)); it shares memory with t.
func (t *Tensor) Row(i int) []byte {
	n1, n2 := t.shape[1], t.shape[2]
	if i < 0 || i >= t.Rows() {
		panic(fmt.Sprintf("tensor: row %d out of range [0, %d)", i, t.Rows()))
	}
	off := t.rowOffset(i%n1, i/n1%n2, i/(n1*n2))
	n := t.RowBytes()
	return t.data[off : off+n : off+n]
}

// F32 returns the elements of a contiguous F32 tensor, sharing memory with
// t. It panics if t is not F32, not contiguous, or its storage is not
// 4-byte aligned.
func (t *Tensor) F32() []float32 {
	if t.dtype != F32 {
		panic(fmt.Sprintf("tensor: F32 of a %s tensor", t.dtype))
	}
	return asFloat32(t.Bytes())
}

// RowF32 returns row i of an F32 tensor (see Row), sharing memory with t.
func (t *Tensor) RowF32(i int) []float32 {
	if t.dtype != F32 {
		panic(fmt.Sprintf("tensor: RowF32 of a %s tensor", t.dtype))
	}
	return asFloat32(t.Row(i))
}

// U16 returns the element bits of a contiguous F16 or BF16 tensor, sharing
// memory with t. It panics on other types, if t is not contiguous, or if
// its storage is not 2-byte aligned.
func (t *Tensor) U16() []uint16 {
	if t.dtype != F16 && t.dtype != BF16 {
		panic(fmt.Sprintf("tensor: U16 of a %s tensor", t.dtype))
	}
	b := t.Bytes()
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 != 0 {
		panic("tensor: U16 of unaligned storage")
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

func asFloat32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		panic("tensor: float32 view of unaligned storage")
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// At returns element (i0, i1, i2, i3) of an F32 tensor; trailing indices
// may be left out (0).
func (t *Tensor) At(idx ...int) float32 {
	return *t.f32Ptr(idx)
}

// Set sets element (i0, i1, i2, i3) of an F32 tensor to v.
func (t *Tensor) Set(v float32, idx ...int) {
	*t.f32Ptr(idx) = v
}

func (t *Tensor) f32Ptr(idx []int) *float32 {
	if t.dtype != F32 {
		panic(fmt.Sprintf("tensor: element access to a %s tensor", t.dtype))
	}
	if len(idx) > MaxDims {
		panic(fmt.Sprintf("tensor: %d indices", len(idx)))
	}
	var i [MaxDims]int
	copy(i[:], idx)
	if uint(i[0]) >= uint(t.shape[0]) {
		panic(fmt.Sprintf("tensor: index %v out of range for shape %v", idx, t.shape))
	}
	off := t.rowOffset(i[1], i[2], i[3]) + 4*i[0]
	return &asFloat32(t.data[off : off+4])[0]
}

// Slice returns the view of elements lo..hi-1 along dimension dim, sharing
// memory with t; the other dimensions are unchanged. For a block type,
// slicing dimension 0 must cut at block boundaries. It panics on a bad
// range.
func (t *Tensor) Slice(dim, lo, hi int) *Tensor {
	if dim < 0 || dim >= MaxDims || lo < 0 || hi < lo || hi > t.shape[dim] {
		panic(fmt.Sprintf("tensor: Slice(%d, %d, %d) of shape %v", dim, lo, hi, t.shape))
	}
	v := *t
	v.owned = false
	v.shape[dim] = hi - lo
	var off int
	if dim == 0 {
		bs := t.dtype.BlockSize()
		if lo%bs != 0 || hi%bs != 0 {
			panic(fmt.Sprintf("tensor: Slice(0, %d, %d) cuts %s blocks of %d", lo, hi, t.dtype, bs))
		}
		off = lo / bs * t.stride[0]
	} else {
		off = lo * t.stride[dim]
	}
	if v.shape.Len() == 0 {
		v.data = nil
	} else {
		v.data = t.data[off:]
	}
	return &v
}

// Reshape returns a contiguous tensor's data viewed with new sizes of the
// same element count (innermost first), sharing memory with t. It panics if
// t is not contiguous or the shape does not fit.
func (t *Tensor) Reshape(sizes ...int) *Tensor {
	s, err := shapeOf(t.dtype, sizes)
	if err != nil {
		panic(err)
	}
	if s.Len() != t.Len() {
		panic(fmt.Sprintf("tensor: Reshape %v to %v", t.shape, s))
	}
	b := t.Bytes()
	return &Tensor{dtype: t.dtype, shape: s, stride: contiguousStrides(t.dtype, s), data: b}
}

// Clone returns a contiguous copy of t that owns its storage.
func (t *Tensor) Clone() *Tensor {
	c := New(t.dtype, t.shape[:]...)
	n := t.RowBytes()
	for i := range t.Rows() {
		copy(c.data[i*n:], t.Row(i))
	}
	return c
}

func (t *Tensor) String() string {
	return fmt.Sprintf("%s%v", t.dtype, t.shape)
}
