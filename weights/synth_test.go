package weights

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

func smallSynth(t quant.Type) SynthConfig {
	return SynthConfig{Dim: 256, FFN: 512, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 512, Type: t, Seed: 7, Std: 0.05}
}

func synthBytes(t testing.TB, c SynthConfig) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSynth(&buf, c); err != nil {
		t.Fatalf("WriteSynth(%+v): %v", c, err)
	}
	return buf.Bytes()
}

func TestSynthOpens(t *testing.T) {
	for _, typ := range []quant.Type{quant.F32, quant.F16, quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.Q6_K} {
		t.Run(typ.String(), func(t *testing.T) {
			c := smallSynth(typ)
			f, err := gguf.Parse(synthBytes(t, c))
			if err != nil {
				t.Fatal(err)
			}
			h, err := DecodeHParams(f)
			if err != nil {
				t.Fatal(err)
			}
			if h.Dim != c.Dim || h.Layers != c.Layers || h.Vocab != c.Vocab || h.KVHeads != c.KVHeads || h.TiedOutput {
				t.Errorf("hparams = %+v, want the synth config %+v", h, c)
			}
			q, _ := f.Tensor("blk.0.attn_q.weight")
			if q.Type != typ {
				t.Errorf("attn_q type = %s, want %s", q.Type, typ)
			}
			// Quantized values stay close to the values before quantization.
			_, ts, _ := c.Plan()
			vals := make([]float32, q.Elements())
			if err := quant.Dequantize(q.Type, vals, f.TensorData(q)); err != nil {
				t.Fatal(err)
			}
			var idx uint64
			for i := range ts {
				if ts[i].Info.Name == q.Name {
					idx = uint64(i)
				}
			}
			orig := make([]float32, len(vals))
			c.SynthValues(idx, ts[idx], 0, orig)
			var num, den float64
			for i := range vals {
				d := float64(vals[i] - orig[i])
				num += d * d
				den += float64(orig[i]) * float64(orig[i])
			}
			if rel := num / den; rel > 0.01 { // relative squared error: under 10% RMS even for 4 bits
				t.Errorf("relative squared error of %s weights = %g", typ, rel)
			}
		})
	}
}

func TestSynthDeterministic(t *testing.T) {
	c := smallSynth(quant.Q4_K)
	a := synthBytes(t, c)
	c.Workers = 1
	b := synthBytes(t, c)
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Error("synth output depends on the number of workers")
	}
	c.Seed++
	if bytes.Equal(a, synthBytes(t, c)) {
		t.Error("synth output does not depend on the seed")
	}
}

func TestSynthFallbackAndTied(t *testing.T) {
	// A 64-wide model cannot hold Q4_K rows (256 per block): llama-quantize
	// falls back to Q8_0, and so does synth.
	c := SynthConfig{Dim: 64, FFN: 96, Layers: 1, Heads: 4, KVHeads: 4, Vocab: 300, Type: quant.Q4_K, Tied: true}
	f, err := gguf.Parse(synthBytes(t, c))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := f.Tensor("blk.0.attn_q.weight")
	if q.Type != quant.Q8_0 {
		t.Errorf("attn_q type = %s, want Q8_0 fallback", q.Type)
	}
	if f.HasTensor("output.weight") {
		t.Error("tied model has output.weight")
	}
	h, err := DecodeHParams(f)
	if err != nil || !h.TiedOutput {
		t.Errorf("DecodeHParams = %+v, %v; want tied output", h, err)
	}
}

func TestSynthBadConfig(t *testing.T) {
	for _, c := range []SynthConfig{
		{Dim: 64, FFN: 96, Layers: 1, Heads: 4, KVHeads: 4, Vocab: 100, Type: quant.F32},
		{Dim: 64, FFN: 96, Layers: 1, Heads: 5, KVHeads: 5, Vocab: 300, Type: quant.F32},
		{Dim: 64, FFN: 96, Layers: 1, Heads: 4, KVHeads: 3, Vocab: 300, Type: quant.F32},
		{Dim: 64, FFN: 96, Layers: 0, Heads: 4, KVHeads: 4, Vocab: 300, Type: quant.F32},
		{Arch: "gpt2", Dim: 64, FFN: 96, Layers: 1, Heads: 4, KVHeads: 4, Vocab: 300, Type: quant.F32},
	} {
		if err := WriteSynth(&bytes.Buffer{}, c); !errors.Is(err, ErrHParams) && !errors.Is(err, ErrArch) {
			t.Errorf("WriteSynth(%+v) = %v, want ErrHParams or ErrArch", c, err)
		}
	}
	c := smallSynth(quant.IQ2_XXS)
	if err := WriteSynth(&bytes.Buffer{}, c); !errors.Is(err, quant.ErrUnsupported) {
		t.Errorf("WriteSynth(IQ2_XXS) = %v, want ErrUnsupported", err)
	}
}

func TestConvert(t *testing.T) {
	src, err := gguf.Parse(synthBytes(t, smallSynth(quant.Q4_0)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Convert(&buf, src, quant.F32); err != nil {
		t.Fatal(err)
	}
	dst, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range src.Tensors {
		a := &src.Tensors[i]
		b, err := dst.Tensor(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, a.Elements())
		got := make([]float32, b.Elements())
		if err := quant.Dequantize(a.Type, want, src.TensorData(a)); err != nil {
			t.Fatal(err)
		}
		if err := quant.Dequantize(b.Type, got, dst.TensorData(b)); err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("%s[%d] = %g after conversion, want %g (the source's dequantized value)", a.Name, j, got[j], want[j])
			}
		}
	}
	if ft, _ := dst.Metadata.Uint("general.file_type"); ft != 0 {
		t.Errorf("file_type = %d, want 0 (all F32)", ft)
	}
}

// TestSynthFile writes a model to disk and opens it through mmap.
func TestSynthFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, synthBytes(t, smallSynth(quant.Q8_0)), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ComputeManifest(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tensors) != 1+2*9+2 {
		t.Errorf("%d tensors, want %d", len(m.Tensors), 1+2*9+2)
	}
}
