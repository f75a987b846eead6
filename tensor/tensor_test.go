package tensor

import (
	"errors"
	"fmt"
	"testing"
)

func TestDTypeGeometry(t *testing.T) {
	tests := []struct {
		d          DType
		name       string
		block, siz int
	}{
		{F32, "F32", 1, 4},
		{F16, "F16", 1, 2},
		{BF16, "BF16", 1, 2},
		{Q4_0, "Q4_0", 32, 18},
		{Q8_0, "Q8_0", 32, 34},
		{Q4_K, "Q4_K", 256, 144},
		{Q6_K, "Q6_K", 256, 210},
		{Q2_0, "Q2_0", 64, 18},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.name {
			t.Errorf("DType(%d).String() = %q, want %q", uint32(tt.d), got, tt.name)
		}
		if got := tt.d.BlockSize(); got != tt.block {
			t.Errorf("%s.BlockSize() = %d, want %d", tt.d, got, tt.block)
		}
		if got := tt.d.TypeSize(); got != tt.siz {
			t.Errorf("%s.TypeSize() = %d, want %d", tt.d, got, tt.siz)
		}
	}
	for _, d := range []DType{4, 5, 31, 33, 36, MaxDType, 1000} {
		if d.Known() || d.BlockSize() != 0 || d.TypeSize() != 0 {
			t.Errorf("DType(%d) is known (%s, block %d, size %d), want unknown", uint32(d), d, d.BlockSize(), d.TypeSize())
		}
		if got, want := d.String(), fmt.Sprintf("dtype(%d)", uint32(d)); got != want {
			t.Errorf("DType(%d).String() = %q, want %q", uint32(d), got, want)
		}
	}
	if got := Q4_K.RowBytes(512); got != 288 {
		t.Errorf("Q4_K.RowBytes(512) = %d, want 288", got)
	}
	if !Q4_0.IsQuantized() || F16.IsQuantized() {
		t.Errorf("IsQuantized: Q4_0 %v, F16 %v; want true, false", Q4_0.IsQuantized(), F16.IsQuantized())
	}
}

func TestRowBytesPanics(t *testing.T) {
	for _, tc := range []struct {
		d DType
		n int
	}{{Q4_0, 33}, {F32, -1}, {DType(4), 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s.RowBytes(%d) did not panic", tc.d, tc.n)
				}
			}()
			tc.d.RowBytes(tc.n)
		}()
	}
}

func TestNewAndAccess(t *testing.T) {
	x := New(F32, 3, 2, 4)
	if got := x.Shape(); got != (Shape{3, 2, 4, 1}) {
		t.Fatalf("New(F32, 3, 2, 4).Shape() = %v, want [3 2 4 1]", got)
	}
	if got, want := x.Strides(), [MaxDims]int{4, 12, 24, 96}; got != want {
		t.Errorf("Strides() = %v, want %v", got, want)
	}
	if x.Len() != 24 || x.Rows() != 8 || x.RowBytes() != 12 || x.Shape().Dims() != 3 || !x.Owned() || !x.IsContiguous() {
		t.Errorf("New(F32, 3, 2, 4): Len %d Rows %d RowBytes %d Dims %d Owned %v Contiguous %v",
			x.Len(), x.Rows(), x.RowBytes(), x.Shape().Dims(), x.Owned(), x.IsContiguous())
	}
	f := x.F32()
	for i := range f {
		f[i] = float32(i)
	}
	if got := x.At(2, 1, 3); got != 23 {
		t.Errorf("At(2, 1, 3) = %v, want 23", got)
	}
	x.Set(-1, 1, 0, 2)
	if f[1+0*3+2*6] != -1 {
		t.Errorf("Set(-1, 1, 0, 2) did not write element 13")
	}
	r := x.RowF32(5) // i1 = 1, i2 = 2
	if r[0] != 15 || len(r) != 3 {
		t.Errorf("RowF32(5) = %v, want [15 16 17]", r)
	}
	r[1] = 100
	if x.At(1, 1, 2) != 100 {
		t.Errorf("RowF32 does not share memory")
	}
	if got := x.String(); got != "F32[3 2 4]" {
		t.Errorf("String() = %q, want F32[3 2 4]", got)
	}
}

func TestFromBytes(t *testing.T) {
	b := make([]byte, 2*18*3)
	q, err := FromBytes(Q4_0, b, 64, 3)
	if err != nil {
		t.Fatalf("FromBytes(Q4_0, 108 bytes, 64, 3): %v", err)
	}
	if q.Owned() || q.RowBytes() != 36 || len(q.Row(2)) != 36 {
		t.Errorf("FromBytes: Owned %v RowBytes %d", q.Owned(), q.RowBytes())
	}
	q.Row(1)[0] = 7
	if b[36] != 7 {
		t.Errorf("Row does not share memory with borrowed storage")
	}
	bad := []struct {
		d     DType
		n     int
		sizes []int
	}{
		{Q4_0, 108, []int{63, 3}},      // not whole blocks
		{Q4_0, 107, []int{64, 3}},      // short
		{F32, 16, []int{2, 2, 2}},      // long
		{F32, 0, nil},                  // no dims
		{F32, 4, []int{1, 1, 1, 1, 1}}, // too many
		{F32, 0, []int{-1}},            // negative
		{DType(5), 0, []int{0}},        // unknown type
	}
	for _, tt := range bad {
		_, err := FromBytes(tt.d, make([]byte, tt.n), tt.sizes...)
		if !errors.Is(err, ErrShape) {
			t.Errorf("FromBytes(%s, %d bytes, %v) error = %v, want ErrShape", tt.d, tt.n, tt.sizes, err)
		}
	}
}

func TestSliceReshapeClone(t *testing.T) {
	data := make([]float32, 4*3*2)
	for i := range data {
		data[i] = float32(i)
	}
	x := FromFloat32(data, 4, 3, 2)
	s := x.Slice(1, 1, 3) // shape [4 2 2]
	if s.Shape() != (Shape{4, 2, 2, 1}) || s.IsContiguous() || s.Owned() {
		t.Fatalf("Slice(1, 1, 3): shape %v contiguous %v owned %v", s.Shape(), s.IsContiguous(), s.Owned())
	}
	if got := s.At(0, 0, 1); got != 16 {
		t.Errorf("Slice(1, 1, 3).At(0, 0, 1) = %v, want 16", got)
	}
	if got := s.RowF32(3); got[0] != 20 {
		t.Errorf("Slice(1, 1, 3).RowF32(3)[0] = %v, want 20", got[0])
	}
	c := s.Clone()
	if !c.IsContiguous() || !c.Owned() {
		t.Errorf("Clone: contiguous %v owned %v", c.IsContiguous(), c.Owned())
	}
	want := []float32{4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23}
	for i, v := range c.F32() {
		if v != want[i] {
			t.Fatalf("Clone().F32()[%d] = %v, want %v", i, v, want[i])
		}
	}
	c.F32()[0] = -5
	if data[4] != 4 {
		t.Errorf("Clone shares memory")
	}
	o := x.Slice(2, 1, 2) // outermost: contiguous
	if !o.IsContiguous() || o.F32()[0] != 12 || len(o.F32()) != 12 {
		t.Errorf("Slice(2, 1, 2): contiguous %v, F32 %v", o.IsContiguous(), o.F32())
	}
	r := x.Reshape(12, 2)
	if r.Shape() != (Shape{12, 2, 1, 1}) || r.At(3, 1) != 15 {
		t.Errorf("Reshape(12, 2): shape %v At(3, 1) %v", r.Shape(), r.At(3, 1))
	}
	e := x.Slice(0, 2, 2)
	if e.Len() != 0 {
		t.Errorf("Slice(0, 2, 2).Len() = %d, want 0", e.Len())
	}
	q := New(Q8_0, 64, 2)
	if got := q.Slice(0, 32, 64).Row(1); &got[0] != &q.Row(1)[34] {
		t.Errorf("Slice(0, 32, 64) of Q8_0 does not start at the second block")
	}
}

func TestPanics(t *testing.T) {
	x := New(F32, 4, 2)
	q := New(Q4_0, 32)
	h := New(F16, 4)
	for name, f := range map[string]func(){
		"Slice out of range":     func() { x.Slice(1, 0, 3) },
		"Slice cuts block":       func() { q.Slice(0, 0, 16) },
		"Reshape wrong count":    func() { x.Reshape(3, 3) },
		"Reshape non-contiguous": func() { x.Slice(0, 0, 2).Reshape(4) },
		"Bytes non-contiguous":   func() { x.Slice(0, 0, 2).Bytes() },
		"F32 of F16":             func() { h.F32() },
		"U16 of F32":             func() { x.U16() },
		"At out of range":        func() { x.At(4, 0) },
		"Row out of range":       func() { x.Row(2) },
		"FromFloat32 length":     func() { FromFloat32(make([]float32, 3), 4) },
		"New bad shape":          func() { New(Q4_0, 31) },
		"F32 unaligned":          func() { mustFromBytes(F32, make([]byte, 64)[1:9], 2).F32() },
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

func mustFromBytes(d DType, b []byte, sizes ...int) *Tensor {
	t, err := FromBytes(d, b, sizes...)
	if err != nil {
		panic(err)
	}
	return t
}

func TestU16(t *testing.T) {
	bits := []uint16{0x3c00, 0xc000, 0x7c00}
	h := FromUint16(F16, bits, 3)
	u := h.U16()
	if len(u) != 3 || u[1] != 0xc000 {
		t.Fatalf("U16() = %#x, want %#x", u, bits)
	}
	u[0] = 1
	if bits[0] != 1 {
		t.Errorf("U16 does not share memory")
	}
}
