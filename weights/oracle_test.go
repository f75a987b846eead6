package weights

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// oracleLogits runs llama.cpp (../shared/oracle/oracle.mjs) on the model
// and returns the full logit vectors after each of the input tokens.
func oracleLogits(t *testing.T, model string, tokens string) [][]float64 {
	t.Helper()
	node, script := testenv.Oracle(t)
	dump := model + ".logits.json"
	cmd := exec.Command(node, script, "--model", model, "--tokens", tokens, "--n", "1", "--reps", "0",
		"--threads", "1", "--kv-type", "F32", "--flash-attn", "off", "--dump-logits", dump)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama.cpp failed on %s: %v\n%s", filepath.Base(model), err, tail(out, 2000))
	}
	raw, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Positions []struct {
			Logits []float64 `json:"logits"`
		} `json:"positions"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	var out [][]float64
	for _, p := range res.Positions {
		out = append(out, p.Logits)
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// relErr is the RMS of a-b relative to the RMS of b, over all positions.
func relErr(a, b [][]float64) float64 {
	var num, den float64
	for i := range b {
		for j := range b[i] {
			d := a[i][j] - b[i][j]
			num += d * d
			den += b[i][j] * b[i][j]
		}
	}
	return math.Sqrt(num / den)
}

// TestLlamaCppLoadsSynth writes synthetic models in several types, has
// llama.cpp load and run them, and compares logits with those of the same
// weights written as F32, and with those of the quantized weights after our
// own dequantization to F32. The second comparison shows llama.cpp reads our
// blocks as we do: what is left is llama.cpp quantizing activations to 8
// bits inside its quantized matmuls (about 1.5-2% RMS here), far below the
// weights' own quantization error.
func TestLlamaCppLoadsSynth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp")
	}
	testenv.Oracle(t)
	dir := t.TempDir()
	const tokens = "1,100,200,300,400,45,67,89"
	write := func(name string, fill func(*os.File) error) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := fill(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ref := oracleLogits(t, write("f32.gguf", func(f *os.File) error { return WriteSynth(f, smallSynth(quant.F32)) }), tokens)
	// Bounds on the relative RMS logit error against the F32 weights, about
	// twice what was measured (Q4_0 0.27, Q8_0 0.023, Q4_K 0.21, Q6_K 0.059).
	for _, tc := range []struct {
		typ      quant.Type
		maxVsF32 float64
	}{
		{quant.Q4_0, 0.5}, {quant.Q8_0, 0.05}, {quant.Q4_K, 0.4}, {quant.Q6_K, 0.12},
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			qpath := write(tc.typ.String()+".gguf", func(f *os.File) error { return WriteSynth(f, smallSynth(tc.typ)) })
			src, err := gguf.Open(qpath)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			dpath := write(tc.typ.String()+".deq.gguf", func(f *os.File) error { return Convert(f, src, quant.F32) })
			q := oracleLogits(t, qpath, tokens)
			d := oracleLogits(t, dpath, tokens)
			vsF32, vsOwn := relErr(q, ref), relErr(q, d)
			t.Logf("%s: relative RMS logit error vs F32 weights %.4f, vs our dequantization %.4f", tc.typ, vsF32, vsOwn)
			if vsF32 > tc.maxVsF32 {
				t.Errorf("%s logits differ from F32 weights' by %.4f (relative RMS), want <= %.2f", tc.typ, vsF32, tc.maxVsF32)
			}
			if vsOwn > 0.04 {
				t.Errorf("%s logits differ from our dequantized weights' by %.4f (relative RMS), want <= 0.04", tc.typ, vsOwn)
			}
		})
	}
}
