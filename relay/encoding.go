package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/stratanet/strata/weights/quant"
)

// Encoding is how hidden states travel in a [Step]: a flat []float32 of
// Count × Dim values (Dim innermost) turned into bytes.
//
// Error bounds of Decode(Encode(x)) against x:
//   - [F32]: exact, bit for bit (raw IEEE 754 little-endian).
//   - [F16]: round to nearest even; for |x| in the normal f16 range
//     [2^-14, 65504] the relative error is at most 2^-11; below it the
//     absolute error is at most 2^-25; beyond 65504 a value becomes ±Inf.
//     Values that are already f16 values round-trip exactly.
//   - [Q8_0]: ggml Q8_0 blocks of 32 values (an f16 scale d ≈ amax/127 and
//     32 int8). Per block with amax = max |x|, the absolute error is at most
//     amax/254 (rounding to the int8 grid) + amax/2048 (the f16 rounding of
//     the scale, times 127) + 127·2^-25 (when the scale is f16-subnormal).
//     Dim must be a multiple of 32, values finite and amax ≤ 65504·127.
type Encoding uint8

// Activation encodings. The zero value is invalid, so a missing field is
// caught on decode.
const (
	F32  Encoding = 1
	F16  Encoding = 2
	Q8_0 Encoding = 3
)

// DefaultEncoding is the encoding a client uses unless told otherwise.
const DefaultEncoding = F16

// q8Block and q8Bytes are the values and bytes of one Q8_0 block.
const (
	q8Block = 32
	q8Bytes = 34
)

// ErrActivation is returned for activations that cannot be encoded or whose
// bytes do not match the declared encoding and value count.
var ErrActivation = errors.New("relay: bad activations")

// String returns "f32", "f16" or "q8_0".
func (e Encoding) String() string {
	switch e {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case Q8_0:
		return "q8_0"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// Valid reports whether e is a known encoding.
func (e Encoding) Valid() bool { return e == F32 || e == F16 || e == Q8_0 }

// Size returns the number of bytes that n values take in encoding e. It
// fails for an unknown encoding, a negative n, an n that Q8_0 cannot block
// or a size that overflows int.
func (e Encoding) Size(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("%w: %d values", ErrActivation, n)
	}
	var per int
	switch e {
	case F32:
		per = 4
	case F16:
		per = 2
	case Q8_0:
		if n%q8Block != 0 {
			return 0, fmt.Errorf("%w: q8_0: %d values is not a multiple of %d", ErrActivation, n, q8Block)
		}
		if n/q8Block > math.MaxInt/q8Bytes {
			return 0, fmt.Errorf("%w: %d values overflow", ErrActivation, n)
		}
		return n / q8Block * q8Bytes, nil
	default:
		return 0, fmt.Errorf("%w: unknown encoding %d", ErrActivation, uint8(e))
	}
	if n > math.MaxInt/per {
		return 0, fmt.Errorf("%w: %d values overflow", ErrActivation, n)
	}
	return n * per, nil
}

// EncodeActivations encodes x (shape [Dim, Count] flattened, Dim innermost)
// in e. The result does not share memory with x.
func EncodeActivations(e Encoding, x []float32) ([]byte, error) {
	size, err := e.Size(len(x))
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	switch e {
	case F32:
		for i, v := range x {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	case F16:
		encodeF16(b, x)
	case Q8_0:
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 65504*127 {
				return nil, fmt.Errorf("%w: q8_0: value %d is %v", ErrActivation, i, v)
			}
		}
		if err := quant.Quantize(quant.Q8_0, b, x); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrActivation, err)
		}
	}
	return b, nil
}

// DecodeActivations decodes n values in encoding e from b, which must be
// exactly e.Size(n) bytes long; the length is checked before anything is
// allocated. Q8_0 blocks with a non-finite scale are rejected. The result
// does not share memory with b.
func DecodeActivations(e Encoding, b []byte, n int) ([]float32, error) {
	size, err := e.Size(n)
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: %s: %d bytes for %d values, want %d", ErrActivation, e, len(b), n, size)
	}
	x := make([]float32, n)
	switch e {
	case F32:
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		decodeF16(x, b)
	case Q8_0:
		for i := 0; i < len(b); i += q8Bytes {
			if binary.LittleEndian.Uint16(b[i:])&0x7c00 == 0x7c00 {
				return nil, fmt.Errorf("%w: q8_0: block %d has a non-finite scale", ErrActivation, i/q8Bytes)
			}
		}
		if err := quant.Dequantize(quant.Q8_0, x, b); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrActivation, err)
		}
	}
	return x, nil
}

// encodeF16 writes x as little-endian f16 into b, len(b) == 2*len(x), with
// an inlined fast path for values that stay normal f16 numbers: rebias
// the exponent, round the mantissa to nearest even (a carry into the
// exponent is the right result), truncate. Bits equal quant.FP32ToFP16's
// for every input (tested).
func encodeF16(b []byte, x []float32) {
	b = b[:2*len(x)]
	for i, f := range x {
		bits := math.Float32bits(f)
		u := bits & 0x7fffffff
		var h uint16
		if u >= 0x38800000 && u < 0x477ff000 {
			u += 0xc8000fff + (u>>13)&1
			h = uint16(bits>>16)&0x8000 | uint16(u>>13)
		} else {
			h = quant.FP32ToFP16(f)
		}
		b[2*i] = byte(h)
		b[2*i+1] = byte(h >> 8)
	}
}

// decodeF16 reads len(x) little-endian f16 values from b, len(b) ==
// 2*len(x), with an inlined fast path for normal values.
func decodeF16(x []float32, b []byte) {
	b = b[:2*len(x)]
	for i := range x {
		h := uint16(b[2*i]) | uint16(b[2*i+1])<<8
		if e := h & 0x7c00; e != 0 && e != 0x7c00 {
			x[i] = math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 0x38000000))
		} else {
			x[i] = quant.FP16ToFP32(h)
		}
	}
}
