package relay

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// A step of 128 positions of a 2048-wide model.
const benchDim, benchTokens = 2048, 128

func benchEncodings() []Encoding { return []Encoding{F32, F16, Q8_0} }

func BenchmarkEncodeActivations2048x128(b *testing.B) {
	x := randValues(rand.New(rand.NewPCG(1, 1)), benchDim*benchTokens, 1)
	for _, e := range benchEncodings() {
		b.Run(e.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if _, err := EncodeActivations(e, x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeActivations2048x128(b *testing.B) {
	x := randValues(rand.New(rand.NewPCG(1, 1)), benchDim*benchTokens, 1)
	for _, e := range benchEncodings() {
		enc, _ := EncodeActivations(e, x)
		b.Run(e.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if _, err := DecodeActivations(e, enc, len(x)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStepFrame2048x128 measures the frame layer alone: msgpack
// encode and decode of a step whose activations are already encoded.
func BenchmarkStepFrame2048x128(b *testing.B) {
	x := randValues(rand.New(rand.NewPCG(1, 1)), benchDim*benchTokens, 1)
	for _, e := range benchEncodings() {
		act, _ := EncodeActivations(e, x)
		s := &Step{Count: benchTokens, Dim: benchDim, Encoding: e, Activations: act}
		b.Run("encode/"+e.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(act)))
			for b.Loop() {
				if _, err := EncodeFrame(s, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		payload, _ := EncodeFrame(s, 0)
		b.Run("decode/"+e.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(act)))
			for b.Loop() {
				if _, err := DecodeFrame(payload, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStep2048x128 is the whole path of a step: activations to a
// frame and back.
func BenchmarkStep2048x128(b *testing.B) {
	x := randValues(rand.New(rand.NewPCG(1, 1)), benchDim*benchTokens, 1)
	for _, e := range benchEncodings() {
		b.Run(e.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				act, err := EncodeActivations(e, x)
				if err != nil {
					b.Fatal(err)
				}
				p, err := EncodeFrame(&Step{Count: benchTokens, Dim: benchDim, Encoding: e, Activations: act}, 0)
				if err != nil {
					b.Fatal(err)
				}
				f, err := DecodeFrame(p, 0)
				if err != nil {
					b.Fatal(err)
				}
				s := f.(*Step)
				if _, err := DecodeActivations(s.Encoding, s.Activations, s.Count*s.Dim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteReadStep2048x128 is the framing of a step through a
// buffer: WriteFrame then ReadFrame, activations already encoded.
func BenchmarkWriteReadStep2048x128(b *testing.B) {
	x := randValues(rand.New(rand.NewPCG(1, 1)), benchDim*benchTokens, 1)
	act, _ := EncodeActivations(F16, x)
	s := &Step{Count: benchTokens, Dim: benchDim, Encoding: F16, Activations: act}
	var buf bytes.Buffer
	b.ReportAllocs()
	b.SetBytes(int64(len(act)))
	for b.Loop() {
		buf.Reset()
		if err := WriteFrame(&buf, s, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadFrame(&buf, 0); err != nil {
			b.Fatal(err)
		}
	}
}
