package gguf

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value.
type ValueType uint32

// GGUF metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"}

// valueTypeSizes holds the encoded size of the fixed-size types (0 for
// string and array).
var valueTypeSizes = [...]int{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

func (t ValueType) valid() bool { return int(t) < len(valueTypeNames) }

func (t ValueType) String() string {
	if !t.valid() {
		return fmt.Sprintf("type(%d)", uint32(t))
	}
	return valueTypeNames[t]
}

// Value is one metadata value. Scalars are held as their Go type (uint8,
// int8, uint16, int16, uint32, int32, float32, bool, string, uint64, int64,
// float64); arrays as an Array.
type Value struct {
	Type ValueType
	// Data is the Go value: one of the scalar types above, or Array.
	Data any
}

// Array is a metadata array. Values is a typed slice matching Elem
// ([]uint8, []int8, []uint16, []int16, []uint32, []int32, []float32,
// []bool, []string, []uint64, []int64, []float64) or []Array for an array of
// arrays.
type Array struct {
	Elem   ValueType
	Values any
}

// Len returns the number of elements of a.
func (a Array) Len() int {
	switch v := a.Values.(type) {
	case []uint8:
		return len(v)
	case []int8:
		return len(v)
	case []uint16:
		return len(v)
	case []int16:
		return len(v)
	case []uint32:
		return len(v)
	case []int32:
		return len(v)
	case []float32:
		return len(v)
	case []bool:
		return len(v)
	case []string:
		return len(v)
	case []uint64:
		return len(v)
	case []int64:
		return len(v)
	case []float64:
		return len(v)
	case []Array:
		return len(v)
	}
	return 0
}

// NewValue wraps a Go value as a metadata value, inferring its GGUF type
// from the Go type. Slices become arrays; [][]T and []Array become arrays of
// arrays.
func NewValue(x any) (Value, error) {
	switch v := x.(type) {
	case uint8:
		return Value{TypeUint8, v}, nil
	case int8:
		return Value{TypeInt8, v}, nil
	case uint16:
		return Value{TypeUint16, v}, nil
	case int16:
		return Value{TypeInt16, v}, nil
	case uint32:
		return Value{TypeUint32, v}, nil
	case int32:
		return Value{TypeInt32, v}, nil
	case float32:
		return Value{TypeFloat32, v}, nil
	case bool:
		return Value{TypeBool, v}, nil
	case string:
		return Value{TypeString, v}, nil
	case uint64:
		return Value{TypeUint64, v}, nil
	case int64:
		return Value{TypeInt64, v}, nil
	case float64:
		return Value{TypeFloat64, v}, nil
	case Array:
		if _, err := arrayElem(v.Values); err != nil {
			return Value{}, err
		}
		return Value{TypeArray, v}, nil
	}
	elem, err := arrayElem(x)
	if err != nil {
		return Value{}, err
	}
	return Value{TypeArray, Array{Elem: elem, Values: x}}, nil
}

// MustValue is NewValue for values known to be valid at compile time; it
// panics on a programmer error.
func MustValue(x any) Value {
	v, err := NewValue(x)
	if err != nil {
		panic(err)
	}
	return v
}

func arrayElem(x any) (ValueType, error) {
	switch v := x.(type) {
	case []uint8:
		return TypeUint8, nil
	case []int8:
		return TypeInt8, nil
	case []uint16:
		return TypeUint16, nil
	case []int16:
		return TypeInt16, nil
	case []uint32:
		return TypeUint32, nil
	case []int32:
		return TypeInt32, nil
	case []float32:
		return TypeFloat32, nil
	case []bool:
		return TypeBool, nil
	case []string:
		return TypeString, nil
	case []uint64:
		return TypeUint64, nil
	case []int64:
		return TypeInt64, nil
	case []float64:
		return TypeFloat64, nil
	case []Array:
		for _, a := range v {
			if _, err := arrayElem(a.Values); err != nil {
				return 0, err
			}
		}
		return TypeArray, nil
	}
	return 0, fmt.Errorf("gguf: no metadata type for Go type %T", x)
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// Metadata is the ordered list of a file's metadata entries with typed
// accessors. Accessors return an error wrapping ErrMissingKey when the key
// is absent and ErrValueType when it holds another type.
type Metadata struct {
	KVs   []KV
	index map[string]int
}

// Errors of metadata look-ups.
var (
	// ErrMissingKey is returned by Metadata accessors for an absent key.
	ErrMissingKey = errors.New("gguf: metadata key not found")
	// ErrValueType is returned by Metadata accessors for a key whose value
	// has a type the accessor cannot convert.
	ErrValueType = errors.New("gguf: metadata value has the wrong type")
)

func (m *Metadata) buildIndex() {
	m.index = make(map[string]int, len(m.KVs))
	for i, kv := range m.KVs {
		m.index[kv.Key] = i
	}
}

// Lookup returns the value of key.
func (m *Metadata) Lookup(key string) (Value, bool) {
	if m.index == nil {
		m.buildIndex()
	}
	i, ok := m.index[key]
	if !ok {
		return Value{}, false
	}
	return m.KVs[i].Value, true
}

// Has reports whether key is present.
func (m *Metadata) Has(key string) bool {
	_, ok := m.Lookup(key)
	return ok
}

// Set adds key or replaces its value.
func (m *Metadata) Set(key string, v Value) {
	if m.index == nil {
		m.buildIndex()
	}
	if i, ok := m.index[key]; ok {
		m.KVs[i].Value = v
		return
	}
	m.index[key] = len(m.KVs)
	m.KVs = append(m.KVs, KV{key, v})
}

func (m *Metadata) get(key string) (Value, error) {
	v, ok := m.Lookup(key)
	if !ok {
		return Value{}, fmt.Errorf("%w: %s", ErrMissingKey, key)
	}
	return v, nil
}

func typeErr(key string, v Value, want string) error {
	got := v.Type.String()
	if a, ok := v.Data.(Array); ok {
		got = "arr[" + a.Elem.String() + "]"
	}
	return fmt.Errorf("%w: %s is %s, want %s", ErrValueType, key, got, want)
}

// String returns a string value.
func (m *Metadata) String(key string) (string, error) {
	v, err := m.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.Data.(string)
	if !ok {
		return "", typeErr(key, v, "str")
	}
	return s, nil
}

// Bool returns a bool value.
func (m *Metadata) Bool(key string) (bool, error) {
	v, err := m.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.Data.(bool)
	if !ok {
		return false, typeErr(key, v, "bool")
	}
	return b, nil
}

// Int returns a value of any integer type as int64. A uint64 above
// math.MaxInt64 is a type error.
func (m *Metadata) Int(key string) (int64, error) {
	v, err := m.get(key)
	if err != nil {
		return 0, err
	}
	i, ok := asInt(v.Data)
	if !ok {
		return 0, typeErr(key, v, "integer")
	}
	return i, nil
}

// Uint returns a value of any integer type that is not negative.
func (m *Metadata) Uint(key string) (uint64, error) {
	v, err := m.get(key)
	if err != nil {
		return 0, err
	}
	if u, ok := v.Data.(uint64); ok {
		return u, nil
	}
	i, ok := asInt(v.Data)
	if !ok || i < 0 {
		return 0, typeErr(key, v, "non-negative integer")
	}
	return uint64(i), nil
}

// Float returns a float32 or float64 value as float64.
func (m *Metadata) Float(key string) (float64, error) {
	v, err := m.get(key)
	if err != nil {
		return 0, err
	}
	switch x := v.Data.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, typeErr(key, v, "float")
}

// Strings returns an array of strings. The slice is shared with the
// metadata: do not modify it.
func (m *Metadata) Strings(key string) ([]string, error) {
	v, err := m.get(key)
	if err != nil {
		return nil, err
	}
	if a, ok := v.Data.(Array); ok {
		if s, ok := a.Values.([]string); ok {
			return s, nil
		}
	}
	return nil, typeErr(key, v, "arr[str]")
}

// Float32s returns an array of float32 values (float64 arrays are
// converted). The slice may be shared with the metadata: do not modify it.
func (m *Metadata) Float32s(key string) ([]float32, error) {
	v, err := m.get(key)
	if err != nil {
		return nil, err
	}
	if a, ok := v.Data.(Array); ok {
		switch s := a.Values.(type) {
		case []float32:
			return s, nil
		case []float64:
			out := make([]float32, len(s))
			for i, x := range s {
				out[i] = float32(x)
			}
			return out, nil
		}
	}
	return nil, typeErr(key, v, "arr[f32]")
}

// Int32s returns an array of integers that fit in int32 (arrays of any
// integer type are converted). The slice may be shared with the metadata:
// do not modify it.
func (m *Metadata) Int32s(key string) ([]int32, error) {
	v, err := m.get(key)
	if err != nil {
		return nil, err
	}
	a, ok := v.Data.(Array)
	if !ok {
		return nil, typeErr(key, v, "arr[i32]")
	}
	if s, ok := a.Values.([]int32); ok {
		return s, nil
	}
	n := a.Len()
	out := make([]int32, n)
	for i := range n {
		x, ok := arrayInt(a.Values, i)
		if !ok || x < math.MinInt32 || x > math.MaxInt32 {
			return nil, typeErr(key, v, "arr[i32]")
		}
		out[i] = int32(x)
	}
	return out, nil
}

func asInt(x any) (int64, bool) {
	switch v := x.(type) {
	case uint8:
		return int64(v), true
	case int8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case int16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case int32:
		return int64(v), true
	case uint64:
		if v > math.MaxInt64 {
			return 0, false
		}
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

func arrayInt(vals any, i int) (int64, bool) {
	switch v := vals.(type) {
	case []uint8:
		return asInt(v[i])
	case []int8:
		return asInt(v[i])
	case []uint16:
		return asInt(v[i])
	case []int16:
		return asInt(v[i])
	case []uint32:
		return asInt(v[i])
	case []int32:
		return asInt(v[i])
	case []uint64:
		return asInt(v[i])
	case []int64:
		return asInt(v[i])
	}
	return 0, false
}

// Format renders a value for people: scalars as Go prints them, strings
// quoted, arrays by element type and length with their first few elements.
func (v Value) Format(maxElems int) string {
	a, ok := v.Data.(Array)
	if !ok {
		if s, ok := v.Data.(string); ok {
			return fmt.Sprintf("%q", s)
		}
		return fmt.Sprint(v.Data)
	}
	n := a.Len()
	var b strings.Builder
	fmt.Fprintf(&b, "[%s × %d]", a.Elem, n)
	if n == 0 || maxElems <= 0 {
		return b.String()
	}
	b.WriteString(" ")
	shown := min(n, maxElems)
	switch s := a.Values.(type) {
	case []string:
		parts := make([]string, shown)
		for i := range shown {
			parts[i] = fmt.Sprintf("%q", s[i])
		}
		b.WriteString(strings.Join(parts, " "))
	case []Array:
		b.WriteString("…")
		return b.String()
	default:
		b.WriteString(strings.Trim(fmt.Sprint(sliceHead(a.Values, shown)), "[]"))
	}
	if shown < n {
		b.WriteString(" …")
	}
	return b.String()
}

func sliceHead(vals any, n int) any {
	switch v := vals.(type) {
	case []uint8:
		return v[:n]
	case []int8:
		return v[:n]
	case []uint16:
		return v[:n]
	case []int16:
		return v[:n]
	case []uint32:
		return v[:n]
	case []int32:
		return v[:n]
	case []float32:
		return v[:n]
	case []bool:
		return v[:n]
	case []uint64:
		return v[:n]
	case []int64:
		return v[:n]
	case []float64:
		return v[:n]
	}
	return nil
}

// SortedKVs returns the entries sorted by key (a copy).
func (m *Metadata) SortedKVs() []KV {
	kvs := slices.Clone(m.KVs)
	slices.SortFunc(kvs, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs
}
