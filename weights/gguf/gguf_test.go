package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// sampleMetadata has one value of every type, including nested arrays.
func sampleMetadata() *Metadata {
	md := &Metadata{}
	for _, kv := range []struct {
		k string
		v any
	}{
		{"general.architecture", "llama"},
		{"u8", uint8(200)}, {"i8", int8(-5)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)}, {"f32", float32(1.5)},
		{"bool", true}, {"u64", uint64(math.MaxUint64)}, {"i64", int64(math.MinInt64)}, {"f64", 2.25},
		{"strs", []string{"a", "", "ünï"}}, {"f32s", []float32{1, -2, 3.5}}, {"i32s", []int32{1, -1, 7}},
		{"u8s", []uint8{1, 2}}, {"bools", []bool{true, false}}, {"u64s", []uint64{9}}, {"f64s", []float64{0.5}},
		{"i8s", []int8{-1}}, {"u16s", []uint16{65535}}, {"i16s", []int16{-2}}, {"u32s", []uint32{3}}, {"i64s", []int64{-9}},
		{"nested", []Array{{Elem: TypeString, Values: []string{"x", "y"}}, {Elem: TypeInt32, Values: []int32{4}}}},
		{"empty", []string{}},
	} {
		md.Set(kv.k, MustValue(kv.v))
	}
	return md
}

func writeFile(t testing.TB, md *Metadata, tensors []TensorInfo, data [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, md, tensors)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for _, d := range data {
		if _, err := w.Write(d); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

func sampleTensors() ([]TensorInfo, [][]byte) {
	ts := []TensorInfo{
		{Name: "a", Type: quant.F32, Dims: []int64{3, 2}},
		{Name: "b", Type: quant.Q8_0, Dims: []int64{64}},
		{Name: "empty", Type: quant.F16, Dims: []int64{0, 4}},
		{Name: "c", Type: quant.F16, Dims: []int64{5}},
	}
	var data [][]byte
	for _, t := range ts {
		size, _ := tensorSize(t.Type, t.Dims)
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(i*7 + len(t.Name))
		}
		data = append(data, b)
	}
	return ts, data
}

func TestRoundTrip(t *testing.T) {
	md := sampleMetadata()
	ts, data := sampleTensors()
	raw := writeFile(t, md, ts, data)
	f, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if f.Version != 3 || f.Alignment != DefaultAlignment {
		t.Errorf("version, alignment = %d, %d, want 3, %d", f.Version, f.Alignment, DefaultAlignment)
	}
	if !reflect.DeepEqual(f.Metadata.KVs, md.KVs) {
		t.Errorf("metadata differs after round trip:\n got %v\nwant %v", f.Metadata.KVs, md.KVs)
	}
	for i, ti := range ts {
		got, err := f.Tensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != ti.Type || !reflect.DeepEqual(got.Dims, ti.Dims) {
			t.Errorf("tensor %s = %v, want %v", ti.Name, got, ti)
		}
		if got.Offset%DefaultAlignment != 0 {
			t.Errorf("tensor %s offset %d not aligned", ti.Name, got.Offset)
		}
		if !bytes.Equal(f.TensorData(got), data[i]) {
			t.Errorf("tensor %s data differs", ti.Name)
		}
	}
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrNoTensor) {
		t.Errorf("Tensor(nope) err = %v, want ErrNoTensor", err)
	}
}

func TestAccessors(t *testing.T) {
	f, err := Parse(writeFile(t, sampleMetadata(), nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	md := &f.Metadata
	if s, err := md.String("general.architecture"); s != "llama" || err != nil {
		t.Errorf("String = %q, %v", s, err)
	}
	if u, err := md.Uint("u32"); u != 4000000000 || err != nil {
		t.Errorf("Uint(u32) = %d, %v", u, err)
	}
	if u, err := md.Uint("u64"); u != math.MaxUint64 || err != nil {
		t.Errorf("Uint(u64) = %d, %v", u, err)
	}
	if _, err := md.Uint("i8"); !errors.Is(err, ErrValueType) {
		t.Errorf("Uint(negative) err = %v, want ErrValueType", err)
	}
	if i, err := md.Int("i16"); i != -30000 || err != nil {
		t.Errorf("Int(i16) = %d, %v", i, err)
	}
	if _, err := md.Int("u64"); !errors.Is(err, ErrValueType) {
		t.Errorf("Int(huge u64) err = %v, want ErrValueType", err)
	}
	if x, err := md.Float("f32"); x != 1.5 || err != nil {
		t.Errorf("Float = %v, %v", x, err)
	}
	if b, err := md.Bool("bool"); !b || err != nil {
		t.Errorf("Bool = %v, %v", b, err)
	}
	if s, err := md.Strings("strs"); len(s) != 3 || s[2] != "ünï" || err != nil {
		t.Errorf("Strings = %q, %v", s, err)
	}
	if s, err := md.Int32s("u8s"); !reflect.DeepEqual(s, []int32{1, 2}) || err != nil {
		t.Errorf("Int32s(u8s) = %v, %v", s, err)
	}
	if s, err := md.Float32s("f64s"); !reflect.DeepEqual(s, []float32{0.5}) || err != nil {
		t.Errorf("Float32s(f64s) = %v, %v", s, err)
	}
	if _, err := md.String("absent"); !errors.Is(err, ErrMissingKey) {
		t.Errorf("String(absent) err = %v, want ErrMissingKey", err)
	}
	if _, err := md.Strings("f32s"); !errors.Is(err, ErrValueType) {
		t.Errorf("Strings(f32s) err = %v, want ErrValueType", err)
	}
}

func TestVersion2(t *testing.T) {
	raw := writeFile(t, sampleMetadata(), nil, nil)
	binary.LittleEndian.PutUint32(raw[4:], 2)
	f, err := Parse(raw)
	if err != nil || f.Version != 2 {
		t.Fatalf("Parse(v2) = %v, %v", f, err)
	}
}

func TestAlignment(t *testing.T) {
	md := &Metadata{}
	md.Set(KeyAlignment, MustValue(uint32(64)))
	ts, data := sampleTensors()
	f, err := Parse(writeFile(t, md, ts, data))
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
	}
	for _, ti := range f.Tensors {
		if ti.Offset%64 != 0 {
			t.Errorf("tensor %s at %d", ti.Name, ti.Offset)
		}
	}
}

// header builds a file from raw parts so tests can corrupt any field.
type header struct {
	magic    string
	version  uint32
	nTensors uint64
	kvs      [][]byte
	infos    [][]byte
	data     []byte
}

func (h header) bytes() []byte {
	var b []byte
	b = append(b, h.magic...)
	b = binary.LittleEndian.AppendUint32(b, h.version)
	b = binary.LittleEndian.AppendUint64(b, h.nTensors)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(h.kvs)))
	for _, kv := range h.kvs {
		b = append(b, kv...)
	}
	for _, ti := range h.infos {
		b = append(b, ti...)
	}
	b = append(b, make([]byte, pad(uint64(len(b)), 32)-uint64(len(b)))...)
	return append(b, h.data...)
}

func info(name string, typ uint32, off uint64, dims ...uint64) []byte {
	b := appendString(nil, name)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(dims)))
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint64(b, d)
	}
	b = binary.LittleEndian.AppendUint32(b, typ)
	return binary.LittleEndian.AppendUint64(b, off)
}

func kv(key string, typ uint32, payload ...byte) []byte {
	b := appendString(nil, key)
	b = binary.LittleEndian.AppendUint32(b, typ)
	return append(b, payload...)
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCorrupt(t *testing.T) {
	good := header{magic: "GGUF", version: 3, nTensors: 1,
		infos: [][]byte{info("w", 0, 0, 4)}, data: make([]byte, 16)}
	if _, err := Parse(good.bytes()); err != nil {
		t.Fatalf("good file: %v", err)
	}
	mod := func(f func(h *header)) []byte {
		h := good
		h.infos = append([][]byte(nil), good.infos...)
		f(&h)
		return h.bytes()
	}
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"bad magic", mod(func(h *header) { h.magic = "GGML" }), ErrBadMagic},
		{"version 1", mod(func(h *header) { h.version = 1 }), ErrVersion},
		{"version 4", mod(func(h *header) { h.version = 4 }), ErrVersion},
		{"truncated header", good.bytes()[:10], ErrTruncated},
		{"truncated data", good.bytes()[:len(good.bytes())-1], ErrTruncated},
		{"huge tensor count", mod(func(h *header) { h.nTensors = 1 << 60 }), ErrLimit},
		{"huge kv count", func() []byte {
			b := good.bytes()
			binary.LittleEndian.PutUint64(b[16:], 1<<62)
			return b
		}(), ErrLimit},
		{"huge string", mod(func(h *header) { h.kvs = [][]byte{cat(le64(1<<40), []byte("k"))} }), ErrLimit},
		{"huge array", mod(func(h *header) { h.kvs = [][]byte{kv("k", 9, cat(le32(4), le64(1<<50))...)} }), ErrLimit},
		{"huge string array", mod(func(h *header) { h.kvs = [][]byte{kv("k", 9, cat(le32(8), le64(1<<40))...)} }), ErrLimit},
		{"unknown value type", mod(func(h *header) { h.kvs = [][]byte{kv("k", 13, 0)} }), ErrCorrupt},
		{"unknown array type", mod(func(h *header) { h.kvs = [][]byte{kv("k", 9, cat(le32(99), le64(0))...)} }), ErrCorrupt},
		{"bad bool", mod(func(h *header) { h.kvs = [][]byte{kv("k", 7, 2)} }), ErrCorrupt},
		{"duplicate key", mod(func(h *header) { h.kvs = [][]byte{kv("k", 0, 1), kv("k", 0, 2)} }), ErrCorrupt},
		{"deep nesting", mod(func(h *header) {
			var b []byte
			for range 20 {
				b = append(b, cat(le32(9), le64(1))...)
			}
			h.kvs = [][]byte{kv("k", 9, b...)}
		}), ErrCorrupt},
		{"alignment not u32", mod(func(h *header) { h.kvs = [][]byte{kv(KeyAlignment, 0, 32)} }), ErrCorrupt},
		{"alignment 3", mod(func(h *header) { h.kvs = [][]byte{kv(KeyAlignment, 4, le32(3)...)} }), ErrCorrupt},
		{"unknown tensor type", mod(func(h *header) { h.infos[0] = info("w", 4, 0, 4) }), ErrTensorType},
		{"tensor type 1000", mod(func(h *header) { h.infos[0] = info("w", 1000, 0, 4) }), ErrTensorType},
		{"too many dims", mod(func(h *header) { h.infos[0] = info("w", 0, 0, 1, 1, 1, 1, 4) }), ErrDims},
		{"negative dim", mod(func(h *header) { h.infos[0] = info("w", 0, 0, 1<<63) }), ErrDims},
		{"dim overflow", mod(func(h *header) { h.infos[0] = info("w", 0, 0, 1<<40, 1<<40) }), ErrDims},
		{"byte size overflow", mod(func(h *header) { h.infos[0] = info("w", 0, 0, 1<<62) }), ErrDims},
		{"partial block", mod(func(h *header) { h.infos[0] = info("w", 8, 0, 33) }), ErrDims},
		{"name too long", mod(func(h *header) { h.infos[0] = info(string(make([]byte, 64)), 0, 0, 4) }), ErrCorrupt},
		{"duplicate tensor", mod(func(h *header) {
			h.nTensors = 2
			h.infos = [][]byte{info("w", 0, 0, 4), info("w", 0, 32, 4)}
			h.data = make([]byte, 64)
		}), ErrCorrupt},
		{"misaligned offset", mod(func(h *header) { h.infos[0] = info("w", 0, 4, 2) }), ErrBounds},
		{"out of bounds", mod(func(h *header) { h.infos[0] = info("w", 0, 1<<40, 4) }), ErrTruncated},
		{"offset near max", mod(func(h *header) { h.infos[0] = info("w", 0, math.MaxUint64-31, 4) }), ErrTruncated},
		{"overlap", mod(func(h *header) {
			h.nTensors = 2
			h.infos = [][]byte{info("w", 0, 32, 16), info("v", 0, 0, 16)}
			h.data = make([]byte, 128)
		}), ErrOverlap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.raw)
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriterMisuse(t *testing.T) {
	ts, data := sampleTensors()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, nil, ts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrWriter) {
		t.Errorf("Close with missing data = %v, want ErrWriter", err)
	}
	w, _ = NewWriter(&bytes.Buffer{}, nil, ts[:1])
	if _, err := w.Write(make([]byte, 100)); !errors.Is(err, ErrWriter) {
		t.Errorf("Write past end = %v, want ErrWriter", err)
	}
	if _, err := NewWriter(&bytes.Buffer{}, nil, []TensorInfo{{Name: "x", Type: quant.Q4_0, Dims: []int64{31}}}); !errors.Is(err, ErrDims) {
		t.Errorf("NewWriter(partial block) = %v, want ErrDims", err)
	}
	if _, err := NewWriter(&bytes.Buffer{}, nil, []TensorInfo{{Name: "x", Type: 4, Dims: []int64{1}}}); !errors.Is(err, ErrTensorType) {
		t.Errorf("NewWriter(bad type) = %v, want ErrTensorType", err)
	}
}

func TestOpenFile(t *testing.T) {
	ts, data := sampleTensors()
	raw := writeFile(t, sampleMetadata(), ts, data)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("c")
	if !bytes.Equal(f.TensorData(ti), data[3]) {
		t.Error("mapped tensor data differs")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrTruncated) {
		t.Errorf("Open(truncated) = %v, want ErrTruncated", err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrTruncated) {
		t.Errorf("Open(empty) = %v, want ErrTruncated", err)
	}
}

// TestRelease: releasing a tensor's pages of the mapping (or a range
// outside it, or nothing) loses nothing: the data reads back the same.
func TestRelease(t *testing.T) {
	ts := []TensorInfo{{Name: "big", Type: quant.F32, Dims: []int64{5000}}, {Name: "small", Type: quant.F32, Dims: []int64{3}}}
	data := [][]byte{make([]byte, 4*5000), make([]byte, 12)}
	for _, d := range data {
		for i := range d {
			d[i] = byte(i*13 + 1)
		}
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, writeFile(t, sampleMetadata(), ts, data), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	outside := make([]byte, 3*os.Getpagesize())
	f.Release(outside)
	f.Release(nil)
	for i := range f.Tensors {
		f.Release(f.TensorData(&f.Tensors[i]))
	}
	for i := range f.Tensors {
		if !bytes.Equal(f.TensorData(&f.Tensors[i]), data[i]) {
			t.Errorf("tensor %s differs after Release", f.Tensors[i].Name)
		}
	}
	// A File parsed from memory has no mapping: Release does nothing.
	g, err := Parse(writeFile(t, sampleMetadata(), ts, data))
	if err != nil {
		t.Fatal(err)
	}
	g.Release(g.TensorData(&g.Tensors[0]))
	if !bytes.Equal(g.TensorData(&g.Tensors[0]), data[0]) {
		t.Error("parsed tensor differs after Release")
	}
}

// TestCopyTo: CopyTo gives the tensor's bytes whether it reads the file
// (Open) or copies (Parse, or a slice not inside the file), for whole
// tensors and parts at odd offsets; it refuses a dst of another length,
// and reports a read that fails (the file shrank under the mapping).
func TestCopyTo(t *testing.T) {
	ts := []TensorInfo{{Name: "big", Type: quant.F32, Dims: []int64{5000}}, {Name: "small", Type: quant.F32, Dims: []int64{3}}}
	data := [][]byte{make([]byte, 4*5000), make([]byte, 12)}
	for _, d := range data {
		for i := range d {
			d[i] = byte(i*7 + 3)
		}
	}
	file := writeFile(t, sampleMetadata(), ts, data)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*File{f, g} {
		for i := range h.Tensors {
			src := h.TensorData(&h.Tensors[i])
			for _, part := range [][2]int{{0, len(src)}, {1, len(src) - 1}, {5, 6}} {
				dst := make([]byte, part[1]-part[0])
				if err := h.CopyTo(dst, src[part[0]:part[1]]); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(dst, data[i][part[0]:part[1]]) {
					t.Errorf("CopyTo of tensor %s [%d:%d] differs", h.Tensors[i].Name, part[0], part[1])
				}
			}
		}
	}
	outside := []byte("not in the file")
	dst := make([]byte, len(outside))
	if err := f.CopyTo(dst, outside); err != nil || !bytes.Equal(dst, outside) {
		t.Errorf("CopyTo of a slice outside the file = %q, %v", dst, err)
	}
	if err := f.CopyTo(make([]byte, 3), outside); err == nil {
		t.Error("CopyTo into a dst of another length succeeded")
	}
	// Cut the file short: the mapping's bytes past the end cannot be read.
	big := f.TensorData(&f.Tensors[0])
	if err := os.Truncate(path, int64(f.DataOffset)); err != nil {
		t.Fatal(err)
	}
	if err := f.CopyTo(make([]byte, 16), big[:16]); err == nil {
		t.Error("CopyTo from a truncated file succeeded")
	}
}

func FuzzParse(f *testing.F) {
	ts, data := sampleTensors()
	f.Add(writeFile(f, sampleMetadata(), ts, data))
	f.Add(writeFile(f, nil, ts[:1], data[:1]))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		g, err := Parse(raw)
		if err != nil {
			return
		}
		// Everything a parsed file exposes must be safe to use.
		for i := range g.Tensors {
			ti := &g.Tensors[i]
			if len(g.TensorData(ti)) != int(ti.Size) {
				t.Fatalf("tensor %s: %d bytes, want %d", ti.Name, len(g.TensorData(ti)), ti.Size)
			}
		}
		// Re-encoding the parsed file and parsing again gives the same result.
		var tensors [][]byte
		for i := range g.Tensors {
			tensors = append(tensors, g.TensorData(&g.Tensors[i]))
		}
		var buf bytes.Buffer
		w, err := NewWriter(&buf, &g.Metadata, g.Tensors)
		if err != nil {
			t.Fatalf("NewWriter on parsed file: %v", err)
		}
		for _, d := range tensors {
			if _, err := w.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(encodeKVs(t, h), encodeKVs(t, g)) {
			t.Fatal("metadata changed through re-encoding")
		}
	})
}

// encodeKVs compares metadata by encoding (NaN floats defeat DeepEqual).
func encodeKVs(t *testing.T, f *File) []byte {
	var b []byte
	for _, kv := range f.Metadata.KVs {
		var err error
		if b, err = AppendKV(b, kv); err != nil {
			t.Fatal(err)
		}
	}
	return b
}
