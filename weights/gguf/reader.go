package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"unsafe"

	"github.com/stratanet/strata/weights/quant"
)

// File is a parsed GGUF file. Tensor data is a view of the file's bytes
// (memory-mapped by Open): it stays valid until Close.
type File struct {
	Version   uint32
	Metadata  Metadata
	Tensors   []TensorInfo
	Alignment uint64
	// DataOffset is the position of the data section in the file.
	DataOffset uint64

	data    []byte   // the whole file
	fh      *os.File // the open file, when data maps it (CopyTo reads it)
	unmap   func() error
	release func([]byte) // drops a range of the mapping's pages; nil: not mapped
	byName  map[string]int
}

// Open maps the file at path into memory and parses it.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	data, unmap, err := mapFile(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("gguf: map %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		_ = unmap()
		fh.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.fh, f.unmap, f.release = fh, unmap, releasePages
	return f, nil
}

// CopyTo copies b, a part of the file's data (TensorData), into dst, of
// the same length. From a file that Open mapped it reads the bytes from
// the file (pread) rather than through the mapping, which spares a page
// fault for every page of the mapping that the copy would touch: several
// times faster for weights in the page cache. A read error is returned;
// a b that is not inside the file is copied as it is.
func (f *File) CopyTo(dst, b []byte) error {
	if len(dst) != len(b) {
		return fmt.Errorf("gguf: CopyTo: %d bytes into %d", len(b), len(dst))
	}
	off, ok := f.offsetOf(b)
	if f.fh == nil || !ok || len(b) == 0 {
		copy(dst, b)
		return nil
	}
	if _, err := f.fh.ReadAt(dst, int64(off)); err != nil {
		return fmt.Errorf("gguf: read %d bytes at %d: %w", len(b), off, err)
	}
	return nil
}

// offsetOf returns the position of b in the file's data, and false when b
// is not inside it.
func (f *File) offsetOf(b []byte) (uintptr, bool) {
	if len(f.data) == 0 {
		return 0, false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
	if start < base || start+uintptr(len(b)) > base+uintptr(len(f.data)) {
		return 0, false
	}
	return start - base, true
}

// Release tells the OS that b, a part of a tensor's data (TensorData)
// that the caller has copied, will not be read soon: the whole pages of
// the mapping inside b leave the process's resident set (they stay in the
// page cache and are read back if touched again). It is a no-op for a
// File that is not mapped from disk, or a b that is not inside it.
func (f *File) Release(b []byte) {
	if f.release == nil || len(b) == 0 {
		return
	}
	start, ok := f.offsetOf(b)
	if !ok {
		return
	}
	page := uintptr(os.Getpagesize())
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + uintptr(len(b))) &^ (page - 1)
	if lo < hi {
		f.release(f.data[lo:hi])
	}
}

// Close releases the mapping. Tensor data views must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	if f.fh != nil {
		if cerr := f.fh.Close(); err == nil {
			err = cerr
		}
		f.fh = nil
	}
	f.unmap = nil
	f.data = nil
	return err
}

// Size returns the size of the file in bytes.
func (f *File) Size() int64 { return int64(len(f.data)) }

// Bytes returns the whole file. It shares memory with the mapping.
func (f *File) Bytes() []byte { return f.data }

// Tensor returns the info of the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, error) {
	i, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoTensor, name)
	}
	return &f.Tensors[i], nil
}

// HasTensor reports whether the file has a tensor called name.
func (f *File) HasTensor(name string) bool {
	_, ok := f.byName[name]
	return ok
}

// TensorData returns the bytes of a tensor of this file. The result shares
// memory with the mapping (zero copy) and must not be modified.
func (f *File) TensorData(ti *TensorInfo) []byte {
	start := f.DataOffset + ti.Offset
	return f.data[start : start+uint64(ti.Size) : start+uint64(ti.Size)]
}

// Parse parses a GGUF file held in data. The File's tensor views share
// memory with data.
func Parse(data []byte) (*File, error) {
	d := decoder{buf: data}
	f := &File{data: data}
	if len(data) < 4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(data))
	}
	if string(data[:4]) != Magic {
		return nil, fmt.Errorf("%w: starts with %q", ErrBadMagic, data[:4])
	}
	d.off = 4
	var err error
	if f.Version, err = d.u32(); err != nil {
		return nil, err
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("%w: %d (want 2 or 3)", ErrVersion, f.Version)
	}
	nTensors, err := d.u64()
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64()
	if err != nil {
		return nil, err
	}
	// Each metadata entry needs at least 8 (key length) + 4 (type) + 1 bytes;
	// each tensor info at least 8 + 4 + 4 + 8.
	if nKV > uint64(d.remain())/13 {
		return nil, fmt.Errorf("%w (or %w): %d metadata entries cannot fit in a %d-byte file", ErrLimit, ErrTruncated, nKV, len(data))
	}
	if nTensors > uint64(d.remain())/24 {
		return nil, fmt.Errorf("%w (or %w): %d tensor infos cannot fit in a %d-byte file", ErrLimit, ErrTruncated, nTensors, len(data))
	}

	f.Metadata.KVs = make([]KV, 0, nKV)
	f.Metadata.index = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := d.str()
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, err)
		}
		vt, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		v, err := d.value(ValueType(vt), 0)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", key, err)
		}
		if _, dup := f.Metadata.index[key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrCorrupt, key)
		}
		f.Metadata.index[key] = len(f.Metadata.KVs)
		f.Metadata.KVs = append(f.Metadata.KVs, KV{key, v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Metadata.Lookup(KeyAlignment); ok {
		a, isU32 := v.Data.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("%w: %s has type %s, want u32", ErrCorrupt, KeyAlignment, v.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: %s = %d is not a power of two", ErrCorrupt, KeyAlignment, a)
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.byName = make(map[string]int, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		ti, err := d.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		if _, dup := f.byName[ti.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrCorrupt, ti.Name)
		}
		if ti.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("%w: tensor %q at offset %d is not aligned to %d", ErrBounds, ti.Name, ti.Offset, f.Alignment)
		}
		f.byName[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}

	f.DataOffset = pad(uint64(d.off), f.Alignment)
	if err := f.checkLayout(); err != nil {
		return nil, err
	}
	return f, nil
}

// checkLayout verifies that every tensor lies inside the file and that no
// two tensors overlap (in any order).
func (f *File) checkLayout() error {
	size := uint64(len(f.data))
	if len(f.Tensors) > 0 && f.DataOffset > size {
		return fmt.Errorf("%w: data section starts at %d, file has %d bytes", ErrTruncated, f.DataOffset, size)
	}
	avail := size - min(f.DataOffset, size)
	order := make([]int, len(f.Tensors))
	for i, ti := range f.Tensors {
		order[i] = i
		if ti.Offset > avail || uint64(ti.Size) > avail-ti.Offset {
			return fmt.Errorf("%w: tensor %q needs bytes [%d,%d) of a %d-byte data section", ErrTruncated, ti.Name, ti.Offset, ti.Offset+uint64(ti.Size), avail)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := f.Tensors[a].Offset, f.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return 0
	})
	for k := 1; k < len(order); k++ {
		prev, cur := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if prev.Size > 0 && cur.Size > 0 && prev.Offset+uint64(prev.Size) > cur.Offset {
			return fmt.Errorf("%w: %q [%d,%d) and %q [%d,%d)", ErrOverlap,
				prev.Name, prev.Offset, prev.Offset+uint64(prev.Size), cur.Name, cur.Offset, cur.Offset+uint64(cur.Size))
		}
	}
	return nil
}

type decoder struct {
	buf []byte
	off int
}

func (d *decoder) remain() int { return len(d.buf) - d.off }

func (d *decoder) need(n int) error {
	if n < 0 || d.remain() < n {
		return fmt.Errorf("%w: need %d bytes at offset %d, file has %d", ErrTruncated, n, d.off, len(d.buf))
	}
	return nil
}

func (d *decoder) u8() (uint8, error) {
	if err := d.need(1); err != nil {
		return 0, err
	}
	v := d.buf[d.off]
	d.off++
	return v, nil
}

func (d *decoder) u16() (uint16, error) {
	if err := d.need(2); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint16(d.buf[d.off:])
	d.off += 2
	return v, nil
}

func (d *decoder) u32() (uint32, error) {
	if err := d.need(4); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(d.buf[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) u64() (uint64, error) {
	if err := d.need(8); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(d.buf[d.off:])
	d.off += 8
	return v, nil
}

// count reads an element count and checks that count elements of at least
// minSize bytes each fit in the rest of the file.
func (d *decoder) count(minSize int) (int, error) {
	n, err := d.u64()
	if err != nil {
		return 0, err
	}
	if n > uint64(d.remain()/minSize) {
		return 0, fmt.Errorf("%w (or %w): %d elements at offset %d cannot fit in the %d bytes left", ErrLimit, ErrTruncated, n, d.off-8, d.remain())
	}
	return int(n), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(d.remain()) {
		return "", fmt.Errorf("%w (or %w): string of %d bytes at offset %d, %d bytes left", ErrLimit, ErrTruncated, n, d.off-8, d.remain())
	}
	s := string(d.buf[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

func (d *decoder) value(t ValueType, depth int) (Value, error) {
	var (
		x   any
		err error
	)
	switch t {
	case TypeUint8:
		x, err = d.u8()
	case TypeInt8:
		var v uint8
		v, err = d.u8()
		x = int8(v)
	case TypeUint16:
		x, err = d.u16()
	case TypeInt16:
		var v uint16
		v, err = d.u16()
		x = int16(v)
	case TypeUint32:
		x, err = d.u32()
	case TypeInt32:
		var v uint32
		v, err = d.u32()
		x = int32(v)
	case TypeFloat32:
		var v uint32
		v, err = d.u32()
		x = math.Float32frombits(v)
	case TypeBool:
		var v uint8
		v, err = d.u8()
		if err == nil && v > 1 {
			err = fmt.Errorf("%w: bool value %d", ErrCorrupt, v)
		}
		x = v == 1
	case TypeString:
		x, err = d.str()
	case TypeUint64:
		x, err = d.u64()
	case TypeInt64:
		var v uint64
		v, err = d.u64()
		x = int64(v)
	case TypeFloat64:
		var v uint64
		v, err = d.u64()
		x = math.Float64frombits(v)
	case TypeArray:
		x, err = d.array(depth)
	default:
		return Value{}, fmt.Errorf("%w: unknown value type %d", ErrCorrupt, uint32(t))
	}
	if err != nil {
		return Value{}, err
	}
	return Value{t, x}, nil
}

func (d *decoder) array(depth int) (Array, error) {
	if depth >= maxDepth {
		return Array{}, fmt.Errorf("%w: arrays nested deeper than %d", ErrCorrupt, maxDepth)
	}
	et, err := d.u32()
	if err != nil {
		return Array{}, err
	}
	elem := ValueType(et)
	if !elem.valid() {
		return Array{}, fmt.Errorf("%w: unknown array element type %d", ErrCorrupt, et)
	}
	minSize := 0
	switch elem {
	case TypeString:
		minSize = 8
	case TypeArray:
		minSize = 12
	default:
		minSize = valueTypeSizes[elem]
	}
	n, err := d.count(minSize)
	if err != nil {
		return Array{}, err
	}
	a := Array{Elem: elem}
	// Fixed-size elements are decoded in bulk; n*size bytes are known to
	// be present (count checked them).
	b := d.buf[d.off:]
	le := binary.LittleEndian
	switch elem {
	case TypeUint8:
		a.Values = slices.Clone(b[:n])
	case TypeInt8:
		v := make([]int8, n)
		for i := range v {
			v[i] = int8(b[i])
		}
		a.Values = v
	case TypeUint16:
		v := make([]uint16, n)
		for i := range v {
			v[i] = le.Uint16(b[2*i:])
		}
		a.Values = v
	case TypeInt16:
		v := make([]int16, n)
		for i := range v {
			v[i] = int16(le.Uint16(b[2*i:]))
		}
		a.Values = v
	case TypeUint32:
		v := make([]uint32, n)
		for i := range v {
			v[i] = le.Uint32(b[4*i:])
		}
		a.Values = v
	case TypeInt32:
		v := make([]int32, n)
		for i := range v {
			v[i] = int32(le.Uint32(b[4*i:]))
		}
		a.Values = v
	case TypeFloat32:
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		a.Values = v
	case TypeBool:
		v := make([]bool, n)
		for i := range v {
			if b[i] > 1 {
				return Array{}, fmt.Errorf("%w: bool value %d", ErrCorrupt, b[i])
			}
			v[i] = b[i] == 1
		}
		a.Values = v
	case TypeUint64:
		v := make([]uint64, n)
		for i := range v {
			v[i] = le.Uint64(b[8*i:])
		}
		a.Values = v
	case TypeInt64:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(le.Uint64(b[8*i:]))
		}
		a.Values = v
	case TypeFloat64:
		v := make([]float64, n)
		for i := range v {
			v[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		a.Values = v
	case TypeString:
		v := make([]string, n)
		for i := range v {
			if v[i], err = d.str(); err != nil {
				return Array{}, fmt.Errorf("element %d: %w", i, err)
			}
		}
		a.Values = v
		return a, nil
	case TypeArray:
		v := make([]Array, n)
		for i := range v {
			if v[i], err = d.array(depth + 1); err != nil {
				return Array{}, fmt.Errorf("element %d: %w", i, err)
			}
		}
		a.Values = v
		return a, nil
	}
	d.off += n * minSize
	return a, nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	var ti TensorInfo
	name, err := d.str()
	if err != nil {
		return ti, err
	}
	if len(name) > MaxNameLen {
		return ti, fmt.Errorf("%w: tensor name of %d bytes (max %d)", ErrCorrupt, len(name), MaxNameLen)
	}
	ti.Name = name
	nd, err := d.u32()
	if err != nil {
		return ti, err
	}
	if nd > MaxDims {
		return ti, fmt.Errorf("%w: tensor %q has %d dimensions (max %d)", ErrDims, name, nd, MaxDims)
	}
	ti.Dims = make([]int64, nd)
	for j := range ti.Dims {
		v, err := d.u64()
		if err != nil {
			return ti, err
		}
		if v > math.MaxInt64 {
			return ti, fmt.Errorf("%w: tensor %q dimension %d is %d", ErrDims, name, j, v)
		}
		ti.Dims[j] = int64(v)
	}
	t, err := d.u32()
	if err != nil {
		return ti, err
	}
	ti.Type = quant.Type(t)
	if ti.Offset, err = d.u64(); err != nil {
		return ti, err
	}
	if ti.Size, err = tensorSize(ti.Type, ti.Dims); err != nil {
		return ti, fmt.Errorf("tensor %q: %w", name, err)
	}
	return ti, nil
}
