package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Writer writes a GGUF v3 file in one pass with bounded memory: the header,
// metadata and tensor infos are written by NewWriter; the tensors' bytes are
// then streamed through Write in the order the tensors were declared, and
// Writer inserts the alignment padding between them. Tensors are laid out
// back to back at aligned offsets, as llama.cpp requires.
type Writer struct {
	bw      *bufio.Writer
	tensors []TensorInfo
	align   uint64
	cur     int   // index of the tensor being written
	done    int64 // bytes of tensors[cur] written so far
	err     error
}

// ErrWriter is returned when the tensor data written does not match the
// declared tensors.
var ErrWriter = errors.New("gguf: writer misuse")

// NewWriter validates the tensors, assigns their offsets, and writes
// everything up to the data section to w. Only Name, Type and Dims of
// each tensor are read; the returned Tensors carry Size and Offset.
// The alignment is taken from md's general.alignment (u32) if present.
func NewWriter(w io.Writer, md *Metadata, tensors []TensorInfo) (*Writer, error) {
	wr := &Writer{bw: bufio.NewWriterSize(w, 1<<20), align: DefaultAlignment}
	if md == nil {
		md = &Metadata{}
	}
	if v, ok := md.Lookup(KeyAlignment); ok {
		a, isU32 := v.Data.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: %s must be a u32 power of two", ErrWriter, KeyAlignment)
		}
		wr.align = uint64(a)
	}
	names := make(map[string]bool, len(tensors))
	wr.tensors = make([]TensorInfo, len(tensors))
	var off uint64
	for i, t := range tensors {
		if len(t.Name) > MaxNameLen {
			return nil, fmt.Errorf("%w: tensor name %q longer than %d bytes", ErrWriter, t.Name, MaxNameLen)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrWriter, t.Name)
		}
		names[t.Name] = true
		size, err := tensorSize(t.Type, t.Dims)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		wr.tensors[i] = TensorInfo{Name: t.Name, Type: t.Type, Dims: append([]int64(nil), t.Dims...), Offset: off, Size: size}
		off = pad(off+uint64(size), wr.align)
	}

	var hdr []byte
	hdr = append(hdr, Magic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, 3)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(tensors)))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(md.KVs)))
	n := uint64(0)
	write := func(b []byte) {
		if wr.err == nil {
			_, wr.err = wr.bw.Write(b)
			n += uint64(len(b))
		}
	}
	write(hdr)
	for _, kv := range md.KVs {
		b, err := AppendKV(nil, kv)
		if err != nil {
			return nil, err
		}
		write(b)
	}
	for _, t := range wr.tensors {
		b := appendString(nil, t.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.Type))
		b = binary.LittleEndian.AppendUint64(b, t.Offset)
		write(b)
	}
	write(make([]byte, pad(n, wr.align)-n))
	if wr.err != nil {
		return nil, wr.err
	}
	wr.skipEmpty()
	return wr, nil
}

// Tensors returns the tensor infos with their assigned offsets and sizes.
func (w *Writer) Tensors() []TensorInfo { return w.tensors }

// Next returns the tensor whose bytes Write expects next, or nil when all
// tensor data has been written.
func (w *Writer) Next() *TensorInfo {
	if w.cur >= len(w.tensors) {
		return nil
	}
	return &w.tensors[w.cur]
}

func (w *Writer) skipEmpty() {
	for w.cur < len(w.tensors) && w.tensors[w.cur].Size == 0 {
		w.cur++
	}
}

// Write writes tensor data, continuing across tensor boundaries in
// declaration order and padding each tensor to the alignment.
func (w *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.err != nil {
			return written, w.err
		}
		if w.cur >= len(w.tensors) {
			w.err = fmt.Errorf("%w: %d bytes beyond the last tensor", ErrWriter, len(p))
			return written, w.err
		}
		t := &w.tensors[w.cur]
		k := int(min(int64(len(p)), t.Size-w.done))
		if _, err := w.bw.Write(p[:k]); err != nil {
			w.err = err
			return written, err
		}
		written += k
		w.done += int64(k)
		p = p[k:]
		if w.done == t.Size {
			padN := pad(uint64(t.Size), w.align) - uint64(t.Size)
			if _, err := w.bw.Write(make([]byte, padN)); err != nil {
				w.err = err
				return written, err
			}
			w.cur++
			w.done = 0
			w.skipEmpty()
		}
	}
	return written, nil
}

// Close checks that every tensor's data was written and flushes. It does
// not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.tensors) {
		t := &w.tensors[w.cur]
		return fmt.Errorf("%w: tensor %q has %d of %d bytes", ErrWriter, t.Name, w.done, t.Size)
	}
	return w.bw.Flush()
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// AppendKV appends the GGUF encoding of one metadata entry to b.
func AppendKV(b []byte, kv KV) ([]byte, error) {
	b = appendString(b, kv.Key)
	b = binary.LittleEndian.AppendUint32(b, uint32(kv.Value.Type))
	return appendValue(b, kv.Value)
}

func appendValue(b []byte, v Value) ([]byte, error) {
	le := binary.LittleEndian
	switch x := v.Data.(type) {
	case uint8:
		return append(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint16:
		return le.AppendUint16(b, x), nil
	case int16:
		return le.AppendUint16(b, uint16(x)), nil
	case uint32:
		return le.AppendUint32(b, x), nil
	case int32:
		return le.AppendUint32(b, uint32(x)), nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), nil
	case bool:
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case string:
		return appendString(b, x), nil
	case uint64:
		return le.AppendUint64(b, x), nil
	case int64:
		return le.AppendUint64(b, uint64(x)), nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	case Array:
		return appendArray(b, x)
	}
	return nil, fmt.Errorf("%w: value of Go type %T", ErrWriter, v.Data)
}

func appendArray(b []byte, a Array) ([]byte, error) {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(a.Elem))
	b = le.AppendUint64(b, uint64(a.Len()))
	switch s := a.Values.(type) {
	case []uint8:
		return append(b, s...), nil
	case []int8:
		for _, x := range s {
			b = append(b, byte(x))
		}
	case []uint16:
		for _, x := range s {
			b = le.AppendUint16(b, x)
		}
	case []int16:
		for _, x := range s {
			b = le.AppendUint16(b, uint16(x))
		}
	case []uint32:
		for _, x := range s {
			b = le.AppendUint32(b, x)
		}
	case []int32:
		for _, x := range s {
			b = le.AppendUint32(b, uint32(x))
		}
	case []float32:
		for _, x := range s {
			b = le.AppendUint32(b, math.Float32bits(x))
		}
	case []bool:
		for _, x := range s {
			if x {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case []string:
		for _, x := range s {
			b = appendString(b, x)
		}
	case []uint64:
		for _, x := range s {
			b = le.AppendUint64(b, x)
		}
	case []int64:
		for _, x := range s {
			b = le.AppendUint64(b, uint64(x))
		}
	case []float64:
		for _, x := range s {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
	case []Array:
		var err error
		for _, x := range s {
			if b, err = appendArray(b, x); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: array of Go type %T", ErrWriter, a.Values)
	}
	return b, nil
}
