package weights

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// realModels are the facts ../shared/models/README.md lists.
var realModels = []struct {
	file string
	want HParams
}{
	{"stories260K.gguf", HParams{Family: families["llama"], ContextLength: 2048, Dim: 64, Layers: 5, FFN: 172,
		Heads: 8, KVHeads: 4, HeadDimK: 8, HeadDimV: 8, RopeDim: 8, RopeFreqBase: 10000, RopeFreqScale: 1,
		RMSNormEps: 1e-5, Vocab: 512}},
	{"TinyStories-656K.f16.gguf", HParams{Family: families["llama"], ContextLength: 512, Dim: 128, Layers: 2, FFN: 384,
		Heads: 8, KVHeads: 4, HeadDimK: 16, HeadDimV: 16, RopeDim: 16, RopeFreqBase: 10000, RopeFreqScale: 1,
		RMSNormEps: 1e-6, Vocab: 2048, TiedOutput: true}},
	{"tinystories-656k-q8_0.gguf", HParams{Family: families["llama"], ContextLength: 512, Dim: 128, Layers: 2, FFN: 384,
		Heads: 8, KVHeads: 4, HeadDimK: 16, HeadDimV: 16, RopeDim: 16, RopeFreqBase: 10000, RopeFreqScale: 1,
		RMSNormEps: 1e-6, Vocab: 2048, TiedOutput: true}},
	{"TinyStories-656K-Q8_0.diogok.gguf", HParams{Family: families["llama"], ContextLength: 512, Dim: 128, Layers: 2, FFN: 384,
		Heads: 8, KVHeads: 4, HeadDimK: 16, HeadDimV: 16, RopeDim: 16, RopeFreqBase: 10000, RopeFreqScale: 1,
		RMSNormEps: 1e-6, Vocab: 2048, TiedOutput: true}},
	{"llama-2-tiny-random.gguf", HParams{Family: families["llama"], ContextLength: 4096, Dim: 8, Layers: 1, FFN: 32,
		Heads: 2, KVHeads: 2, HeadDimK: 4, HeadDimV: 4, RopeDim: 4, RopeFreqBase: 10000, RopeFreqScale: 1,
		RMSNormEps: 1e-5, Vocab: 32000}},
}

func TestRealModelsHParams(t *testing.T) {
	for _, m := range realModels {
		t.Run(m.file, func(t *testing.T) {
			f, err := gguf.Open(testenv.Shared(t, "models/"+m.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, err := DecodeHParams(f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m.want, *h, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("DecodeHParams(%s) mismatch (-want +got):\n%s", m.file, diff)
			}
		})
	}
}

// TestDequantizeRealModels checks every tensor of the real models
// dequantizes, F32/F16 ones to exactly their stored values, and that the
// Q8_0 model's tensors agree with the F16 model's within Q8_0's bound.
func TestDequantizeRealModels(t *testing.T) {
	load := func(name string) map[string][]float32 {
		f, err := gguf.Open(testenv.Shared(t, "models/"+name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out := map[string][]float32{}
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			vals := make([]float32, ti.Elements())
			if err := quant.Dequantize(ti.Type, vals, f.TensorData(ti)); err != nil {
				t.Fatalf("%s: %v", ti, err)
			}
			out[ti.Name] = vals
		}
		return out
	}
	f16 := load("TinyStories-656K.f16.gguf")
	q8 := load("tinystories-656k-q8_0.gguf")
	for name, want := range f16 {
		got := q8[name]
		if len(got) != len(want) {
			t.Fatalf("%s: %d values in Q8_0 model, %d in F16", name, len(got), len(want))
		}
		// Per 32-block, |err| <= amax/127/2 plus the f16 rounding of the scale.
		for b := 0; b < len(want); b += 32 {
			end := min(b+32, len(want))
			amax := float32(0)
			for _, v := range want[b:end] {
				amax = max(amax, abs(v))
			}
			bound := amax/127*0.5 + amax*2e-3 + 1e-6
			for i := b; i < end; i++ {
				if d := abs(got[i] - want[i]); d > bound {
					t.Fatalf("%s[%d]: Q8_0 %g vs F16 %g (diff %g > bound %g)", name, i, got[i], want[i], d, bound)
				}
			}
		}
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestHParamsErrors(t *testing.T) {
	src, err := gguf.Open(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// rewrite copies the model with edited metadata and tensors.
	rewrite := func(edit func(md *gguf.Metadata) *gguf.Metadata, dropTensor string) *gguf.File {
		md := &gguf.Metadata{}
		for _, kv := range src.Metadata.KVs {
			md.Set(kv.Key, kv.Value)
		}
		md = edit(md)
		var infos []gguf.TensorInfo
		var data [][]byte
		for i := range src.Tensors {
			if src.Tensors[i].Name == dropTensor {
				continue
			}
			infos = append(infos, src.Tensors[i])
			data = append(data, src.TensorData(&src.Tensors[i]))
		}
		var buf bytes.Buffer
		w, err := gguf.NewWriter(&buf, md, infos)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			if _, err := w.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	without := func(key string) func(*gguf.Metadata) *gguf.Metadata {
		return func(md *gguf.Metadata) *gguf.Metadata {
			out := &gguf.Metadata{}
			for _, kv := range md.KVs {
				if kv.Key != key {
					out.Set(kv.Key, kv.Value)
				}
			}
			return out
		}
	}
	set := func(key string, v any) func(*gguf.Metadata) *gguf.Metadata {
		return func(md *gguf.Metadata) *gguf.Metadata {
			md.Set(key, gguf.MustValue(v))
			return md
		}
	}
	tests := []struct {
		name string
		f    *gguf.File
		want error
	}{
		{"no architecture", rewrite(without("general.architecture"), ""), gguf.ErrMissingKey},
		{"unsupported architecture", rewrite(set("general.architecture", "mamba"), ""), ErrArch},
		{"missing head count", rewrite(without("llama.attention.head_count"), ""), gguf.ErrMissingKey},
		{"missing eps", rewrite(without("llama.attention.layer_norm_rms_epsilon"), ""), ErrHParams},
		{"head count as string", rewrite(set("llama.attention.head_count", "8"), ""), gguf.ErrValueType},
		{"zero heads", rewrite(set("llama.attention.head_count", uint32(0)), ""), ErrHParams},
		{"kv heads not dividing", rewrite(set("llama.attention.head_count_kv", uint32(3)), ""), ErrHParams},
		{"odd rope dim", rewrite(set("llama.rope.dimension_count", uint32(7)), ""), ErrHParams},
		{"vocab mismatch", rewrite(set("llama.vocab_size", uint32(100)), ""), ErrHParams},
		{"no embedding", rewrite(func(md *gguf.Metadata) *gguf.Metadata { return md }, "token_embd.weight"), gguf.ErrNoTensor},
		{"embedding width", rewrite(set("llama.embedding_length", uint32(32)), ""), ErrHParams},
		{"yarn", rewrite(set("llama.rope.scaling.type", "yarn"), ""), ErrHParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHParams(tt.f)
			if !errors.Is(err, tt.want) {
				t.Errorf("DecodeHParams = %v, want %v", err, tt.want)
			}
		})
	}
	// Defaults that llama.cpp applies: the file has no rope.freq_base.
	h, err := DecodeHParams(rewrite(set("llama.rope.scaling.factor", float32(4)), ""))
	if err != nil || h.RopeFreqScale != 0.25 || h.RopeFreqBase != 10000 {
		t.Errorf("rope scale/base = %v, %v, %v; want 0.25, 10000", h.RopeFreqScale, h.RopeFreqBase, err)
	}
}

func TestManifest(t *testing.T) {
	ids := map[string]ModelID{}
	for _, m := range realModels {
		man, err := ComputeManifest(testenv.Shared(t, "models/"+m.file), 2)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.file] = man.ID
		one, err := ComputeManifest(testenv.Shared(t, "models/"+m.file), 1)
		if err != nil {
			t.Fatal(err)
		}
		if one.ID != man.ID {
			t.Errorf("%s: id with 1 worker %s, with 2 %s", m.file, one.ID, man.ID)
		}
	}
	// The two Q8_0 files differ only in tensor order and descriptive
	// metadata: same model.
	if a, b := ids["tinystories-656k-q8_0.gguf"], ids["TinyStories-656K-Q8_0.diogok.gguf"]; a != b {
		t.Errorf("Q8_0 files have ids %s and %s, want equal", a, b)
	}
	if a, b := ids["tinystories-656k-q8_0.gguf"], ids["TinyStories-656K.f16.gguf"]; a == b {
		t.Error("F16 and Q8_0 files have the same id")
	}
	if got, err := ParseModelID(ids["stories260K.gguf"].String()); err != nil || got != ids["stories260K.gguf"] {
		t.Errorf("ParseModelID(String()) = %v, %v", got, err)
	}
	if _, err := ParseModelID("xyz"); !errors.Is(err, ErrModelID) {
		t.Errorf("ParseModelID(xyz) = %v, want ErrModelID", err)
	}
}

// TestManifestDetectsChange flips one byte of tensor data.
func TestManifestDetectsChange(t *testing.T) {
	raw, err := os.ReadFile(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := os.WriteFile(a, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-100] ^= 1
	if err := os.WriteFile(b, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	ma, err := ComputeManifest(a, 0)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ComputeManifest(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ma.ID == mb.ID {
		t.Fatal("flipping a tensor byte did not change the model id")
	}
	changed := 0
	for i := range ma.Tensors {
		if ma.Tensors[i].Hash != mb.Tensors[i].Hash {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("%d tensor hashes changed, want 1", changed)
	}
}
