package relay

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, err := EncodeFrame(fr, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x92, 0x03, 0xc6, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		const maxAct = 1 << 16
		fr, err := DecodeFrame(b, maxAct)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("DecodeFrame() = %v, not ErrFrame", err)
			}
			return
		}
		if got := allocBytes(func() { _, _ = DecodeFrame(b, maxAct) }); got > 16<<10 {
			t.Fatalf("DecodeFrame(%d bytes) allocates %d bytes", len(b), got)
		}
		// What decodes re-encodes to a frame that decodes the same.
		// (Bytes may differ: msgpack allows non-minimal integer widths.)
		enc, err := EncodeFrame(fr, maxAct)
		if err != nil {
			t.Fatalf("EncodeFrame(DecodeFrame(b)) = %v", err)
		}
		again, err := DecodeFrame(enc, maxAct)
		if err != nil {
			t.Fatalf("DecodeFrame(EncodeFrame(f)) = %v", err)
		}
		if diff := cmp.Diff(fr, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, fr, maxAct); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFrame(&buf, maxAct); err != nil {
			t.Fatalf("ReadFrame(WriteFrame(f)) = %v", err)
		}
	})
}

func FuzzDecodeActivations(f *testing.F) {
	f.Add(uint8(F32), []byte{0, 0, 128, 63}, 1)
	f.Add(uint8(F16), []byte{0, 60, 0, 188}, 2)
	q8, _ := EncodeActivations(Q8_0, make([]float32, 32))
	f.Add(uint8(Q8_0), q8, 32)
	f.Add(uint8(Q8_0), q8, -1)
	f.Add(uint8(7), q8, 1<<40)
	f.Fuzz(func(t *testing.T, enc uint8, b []byte, n int) {
		e := Encoding(enc)
		x, err := DecodeActivations(e, b, n)
		if err != nil {
			if !errors.Is(err, ErrActivation) {
				t.Fatalf("DecodeActivations() = %v, not ErrActivation", err)
			}
			return
		}
		if len(x) != n {
			t.Fatalf("%d values, want %d", len(x), n)
		}
		if len(x) > len(b) { // at most one value per byte in
			t.Fatalf("%d values from %d bytes", len(x), len(b))
		}
		// Re-encoding what decodes gives the same bytes, except where NaN
		// payloads are quieted (f16) or a q8_0 block is re-scaled.
		out, err := EncodeActivations(e, x)
		switch e {
		case F32:
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("f32 re-encode = %x, %v, want %x", out, err, b)
			}
		case F16:
			if err != nil {
				t.Fatal(err)
			}
			for i := range x {
				if !math.IsNaN(float64(x[i])) && (out[2*i] != b[2*i] || out[2*i+1] != b[2*i+1]) {
					t.Fatalf("f16 value %d: re-encoded %x, want %x", i, out[2*i:2*i+2], b[2*i:2*i+2])
				}
			}
		case Q8_0:
			if err != nil {
				t.Fatalf("q8_0 re-encode = %v", err)
			}
			y, err := DecodeActivations(Q8_0, out, n)
			if err != nil {
				t.Fatal(err)
			}
			for blk := 0; blk < n; blk += 32 {
				var amax float64
				for _, v := range x[blk : blk+32] {
					amax = max(amax, math.Abs(float64(v)))
				}
				bound := amax/254 + amax/2048 + 127*0x1p-25 + amax*1e-6
				for i := blk; i < blk+32; i++ {
					if d := math.Abs(float64(y[i]) - float64(x[i])); d > bound {
						t.Fatalf("q8_0 value %d: %v -> %v, error %g > %g", i, x[i], y[i], d, bound)
					}
				}
			}
		}
	})
}
