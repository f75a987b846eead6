package shard

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
)

func floatBytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// chainRun runs the prompt, then three single tokens, through a chain of
// shards split at the given block boundaries, returning the BLAKE3 of every
// stage's output at every step and the final logits.
func chainRun(t *testing.T, f *gguf.File, cuts []int, threads int, path kernels.Path, kv KVType) ([][32]byte, []float32) {
	t.Helper()
	return chainRunMapped(t, f, cuts, threads, path, kv, false)
}

// chainRunMapped is chainRun with the shards' Config.Mapped set to mapped.
func chainRunMapped(t *testing.T, f *gguf.File, cuts []int, threads int, path kernels.Path, kv KVType, mapped bool) ([][32]byte, []float32) {
	t.Helper()
	h, err := weights.DecodeHParams(f)
	if err != nil {
		t.Fatal(err)
	}
	pool := kernels.NewPool(threads)
	defer pool.Close()
	bounds := append(append([]int{0}, cuts...), h.Layers)
	var shards []*Shard
	var sessions []*Session
	for i := 0; i+1 < len(bounds); i++ {
		s, err := Open(f, Config{Span: Span{bounds[i], bounds[i+1]}, Embed: i == 0, Head: i+2 == len(bounds),
			Pool: pool, Path: path, KVType: kv, Mapped: mapped})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := s.NewSession(32)
		if err != nil {
			t.Fatal(err)
		}
		shards, sessions = append(shards, s), append(sessions, sess)
	}
	var hashes [][32]byte
	var logits []float32
	for _, toks := range [][]int32{{1, 403, 407, 261, 378, 5, 9}, {100}, {200}, {7}} {
		x := make([]float32, len(toks)*h.Dim)
		if err := shards[0].Embed(x, toks); err != nil {
			t.Fatal(err)
		}
		for i, s := range shards {
			if err := s.Forward(sessions[i], x); err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, blake3.Sum256(floatBytes(x)))
		}
		logits = make([]float32, len(toks)*h.Vocab)
		if err := shards[len(shards)-1].Logits(logits, x, len(toks)); err != nil {
			t.Fatal(err)
		}
	}
	return hashes, logits
}

// TestMetamorphic: the same prompt through different splits into shards,
// thread counts and kernel paths gives identical hidden states and logits.
func TestMetamorphic(t *testing.T) {
	for _, model := range []string{"stories260K.gguf", "tinystories-656k-q8_0.gguf", "TinyStories-656K.f16.gguf"} {
		t.Run(model, func(t *testing.T) {
			f, err := gguf.Open(testenv.Shared(t, "models/"+model))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h, _ := weights.DecodeHParams(f)
			for _, kv := range []KVType{KVF32, KVF16} {
				_, want := chainRun(t, f, nil, 1, kernels.Generic, kv)
				// All splits of the blocks into up to 3 stages, plus every
				// single cut; the hidden state after the last stage must be
				// the same as with one shard.
				splits := [][]int{nil}
				for a := 1; a < h.Layers; a++ {
					splits = append(splits, []int{a})
					for b := a + 1; b < h.Layers; b++ {
						splits = append(splits, []int{a, b})
					}
				}
				for _, path := range supportedPaths() {
					for _, threads := range []int{1, 2, 3} {
						for _, cuts := range splits {
							name := fmt.Sprintf("kv=%s/path=%s/threads=%d/cuts=%v", kv, path, threads, cuts)
							_, got := chainRun(t, f, cuts, threads, path, kv)
							if !bytes.Equal(floatBytes(got), floatBytes(want)) {
								t.Errorf("%s: logits differ from one shard, generic, 1 thread", name)
							}
						}
					}
				}
				// Stage hashes of the same split agree across threads and paths.
				cuts := []int{h.Layers / 2}
				ref, _ := chainRun(t, f, cuts, 1, kernels.Generic, kv)
				for _, path := range supportedPaths() {
					got, _ := chainRun(t, f, cuts, 3, path, kv)
					for i := range ref {
						if got[i] != ref[i] {
							t.Errorf("kv=%s path=%s: stage output hash %d differs", kv, path, i)
						}
					}
				}
			}
			if len(supportedPaths()) < 2 {
				t.Log("only the generic kernel path is available on this machine")
			}
		})
	}
}

// TestMappedEqualsCopied: weights run in place in the file's mapping and
// weights copied out of it (the default) give the same stage hashes and
// logits, for a model with a tied head and for split chains.
func TestMappedEqualsCopied(t *testing.T) {
	for _, model := range []string{"stories260K.gguf", "tinystories-656k-q8_0.gguf"} {
		f, err := gguf.Open(testenv.Shared(t, "models/"+model))
		if err != nil {
			t.Fatal(err)
		}
		h, _ := weights.DecodeHParams(f)
		for _, cuts := range [][]int{nil, {h.Layers / 2}} {
			hm, lm := chainRunMapped(t, f, cuts, 2, kernels.Best(), KVF32, true)
			hc, lc := chainRunMapped(t, f, cuts, 2, kernels.Best(), KVF32, false)
			if !bytes.Equal(floatBytes(lm), floatBytes(lc)) {
				t.Errorf("%s cuts=%v: logits of mapped and copied weights differ", model, cuts)
			}
			for i := range hm {
				if hm[i] != hc[i] {
					t.Errorf("%s cuts=%v: stage %d hash of mapped and copied weights differ", model, cuts, i)
				}
			}
		}
		f.Close()
	}
}

// TestCopiedWeightsFreed: shards opened and dropped over and over (their
// weight copies freed by the collector) keep computing the same logits
// while others are collected around them.
func TestCopiedWeightsFreed(t *testing.T) {
	f, err := gguf.Open(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, want := chainRunMapped(t, f, nil, 1, kernels.Best(), KVF32, true)
	for range 5 {
		_, got := chainRunMapped(t, f, []int{2}, 1, kernels.Best(), KVF32, false)
		runtime.GC()
		if !bytes.Equal(floatBytes(got), floatBytes(want)) {
			t.Fatal("logits changed after earlier shards were collected")
		}
	}
}

// supportedPaths are the kernel paths this machine and build can run.
func supportedPaths() []kernels.Path {
	ps := []kernels.Path{kernels.Generic}
	for _, p := range []kernels.Path{kernels.AVX2, kernels.AVX512, kernels.AMX} {
		if p.Supported() {
			ps = append(ps, p)
		}
	}
	return ps
}

// TestBatchEqualsSteps: a prompt evaluated as one batch leaves the same KV
// cache and outputs as the same tokens one at a time, so replay after a
// failure reproduces an uninterrupted run.
func TestBatchEqualsSteps(t *testing.T) {
	f, err := gguf.Open(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pool := kernels.NewPool(2)
	defer pool.Close()
	s, err := Open(f, Config{Embed: true, Head: true, Pool: pool, Path: kernels.Best()})
	if err != nil {
		t.Fatal(err)
	}
	toks := []int32{1, 403, 407, 261, 378, 42}
	d := s.HParams().Dim
	batch, _ := s.NewSession(16)
	xb := make([]float32, len(toks)*d)
	if err := s.Embed(xb, toks); err != nil {
		t.Fatal(err)
	}
	if err := s.Forward(batch, xb); err != nil {
		t.Fatal(err)
	}
	steps, _ := s.NewSession(16)
	for i, tok := range toks {
		x := make([]float32, d)
		if err := s.Embed(x, []int32{tok}); err != nil {
			t.Fatal(err)
		}
		if err := s.Forward(steps, x); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(floatBytes(x), floatBytes(xb[i*d:(i+1)*d])) {
			t.Fatalf("token %d: one at a time differs from the batch", i)
		}
	}
	a, _ := batch.ExportKV()
	b, _ := steps.ExportKV()
	if !bytes.Equal(a, b) {
		t.Error("KV caches differ between batch and one at a time")
	}
}

func TestRollbackAndMigrate(t *testing.T) {
	f, err := gguf.Open(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pool := kernels.NewPool(1)
	defer pool.Close()
	open := func(kv KVType) *Shard {
		s, err := Open(f, Config{Span: Span{1, 4}, Pool: pool, KVType: kv})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, kv := range []KVType{KVF32, KVF16} {
		s := open(kv)
		d := s.HParams().Dim
		input := func(seed int, n int) []float32 {
			x := make([]float32, n*d)
			for i := range x {
				x[i] = float32(math.Sin(float64(i*7+seed))) * 0.5
			}
			return x
		}
		sess, _ := s.NewSession(20)
		if err := s.Forward(sess, input(1, 5)); err != nil {
			t.Fatal(err)
		}
		snapshot, _ := sess.ExportKV()
		after := input(2, 3)
		if err := s.Forward(sess, after); err != nil {
			t.Fatal(err)
		}
		// Roll back and replay: same output.
		if err := sess.Rollback(5); err != nil {
			t.Fatal(err)
		}
		replay := input(2, 3)
		if err := s.Forward(sess, replay); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(floatBytes(after), floatBytes(replay)) {
			t.Errorf("kv=%s: replay after rollback differs", kv)
		}
		// Migrate the snapshot to a second shard of the same span.
		s2 := open(kv)
		moved, _ := s2.NewSession(20)
		if err := moved.ImportKV(snapshot); err != nil {
			t.Fatal(err)
		}
		again := input(2, 3)
		if err := s2.Forward(moved, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(floatBytes(after), floatBytes(again)) {
			t.Errorf("kv=%s: migrated session computes differently", kv)
		}
		// Mismatched or corrupt exports are errors.
		other, err := Open(f, Config{Span: Span{0, 2}, Pool: pool, KVType: kv})
		if err != nil {
			t.Fatal(err)
		}
		os2, _ := other.NewSession(20)
		if err := os2.ImportKV(snapshot); !errors.Is(err, ErrKVFormat) {
			t.Errorf("import into another span: %v, want ErrKVFormat", err)
		}
		for _, bad := range [][]byte{nil, snapshot[:10], snapshot[:len(snapshot)-1], append([]byte("XXXX"), snapshot[4:]...)} {
			if err := moved.ImportKV(bad); !errors.Is(err, ErrKVFormat) {
				t.Errorf("import of %d corrupt bytes: %v, want ErrKVFormat", len(bad), err)
			}
		}
		if err := sess.Rollback(99); !errors.Is(err, ErrInput) {
			t.Errorf("Rollback past the end: %v, want ErrInput", err)
		}
	}
}

func TestBadInput(t *testing.T) {
	path := testenv.Shared(t, "models/stories260K.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pool := kernels.NewPool(1)
	defer pool.Close()
	if _, err := Open(f, Config{Span: Span{3, 9}, Pool: pool}); !errors.Is(err, ErrSpan) {
		t.Errorf("span beyond the model: %v, want ErrSpan", err)
	}
	s, err := Open(f, Config{Embed: true, Head: true, Pool: pool, KVBudget: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NewSession(4096); !errors.Is(err, ErrContext) {
		t.Errorf("session longer than the context: %v, want ErrContext", err)
	}
	sess, err := s.NewSession(8)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 9*s.HParams().Dim)
	if err := s.Forward(sess, x); !errors.Is(err, ErrContext) {
		t.Errorf("prompt longer than the session: %v, want ErrContext", err)
	}
	if err := s.Embed(make([]float32, s.HParams().Dim), []int32{512}); !errors.Is(err, ErrInput) {
		t.Errorf("token out of range: %v, want ErrInput", err)
	}
	if err := s.Forward(sess, x[:5]); !errors.Is(err, ErrInput) {
		t.Errorf("ragged hidden state: %v, want ErrInput", err)
	}
	if _, err := s.NewSession(2000); !errors.Is(err, ErrKVBudget) {
		t.Errorf("session beyond the KV budget: %v, want ErrKVBudget", err)
	}
	sess.Close()
	if err := s.Forward(sess, x[:s.HParams().Dim]); !errors.Is(err, ErrInput) {
		t.Errorf("forward on a closed session: %v, want ErrInput", err)
	}
	mid, _ := Open(f, Config{Span: Span{1, 2}, Pool: pool})
	if err := mid.Embed(x[:64], []int32{1}); !errors.Is(err, ErrNoEnd) {
		t.Errorf("embed on a middle shard: %v, want ErrNoEnd", err)
	}

	// A model of another architecture, and one missing a tensor.
	rewrite := func(edit func(md *gguf.Metadata), drop string) *gguf.File {
		md := &gguf.Metadata{}
		for _, kv := range f.Metadata.KVs {
			md.Set(kv.Key, kv.Value)
		}
		edit(md)
		var infos []gguf.TensorInfo
		var data [][]byte
		for i := range f.Tensors {
			if f.Tensors[i].Name != drop {
				infos = append(infos, f.Tensors[i])
				data = append(data, f.TensorData(&f.Tensors[i]))
			}
		}
		var buf bytes.Buffer
		w, err := gguf.NewWriter(&buf, md, infos)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range data {
			w.Write(d)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		g, err := gguf.Parse(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	mamba := rewrite(func(md *gguf.Metadata) { md.Set("general.architecture", gguf.MustValue("mamba")) }, "")
	if _, err := Open(mamba, Config{Pool: pool}); !errors.Is(err, weights.ErrArch) {
		t.Errorf("unsupported architecture: %v, want ErrArch", err)
	}
	noFFN := rewrite(func(*gguf.Metadata) {}, "blk.3.ffn_up.weight")
	if _, err := Open(noFFN, Config{Pool: pool}); !errors.Is(err, ErrTensor) {
		t.Errorf("missing tensor: %v, want ErrTensor", err)
	}
	// ... but a span that does not need it opens.
	if _, err := Open(noFFN, Config{Span: Span{0, 3}, Pool: pool}); err != nil {
		t.Errorf("span without the missing tensor: %v", err)
	}
}

// TestSubSpanSessions: sessions over sub-ranges of one shard's blocks,
// chained, with the ends on an ends-only shard, give the bits of separate
// shards per stage; KV exports of a sub-span carry only its blocks.
func TestSubSpanSessions(t *testing.T) {
	f, err := gguf.Open(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _ := weights.DecodeHParams(f)
	_, want := chainRun(t, f, []int{1, 3}, 1, kernels.Generic, KVF32)
	pool := kernels.NewPool(2)
	defer pool.Close()
	all, err := Open(f, Config{Pool: pool, Path: kernels.Best()})
	if err != nil {
		t.Fatal(err)
	}
	ends, err := Open(f, Config{EndsOnly: true, Embed: true, Head: true, Pool: pool, Path: kernels.Best()})
	if err != nil {
		t.Fatal(err)
	}
	if ends.Span().Len() != 0 {
		t.Fatalf("ends-only shard has span %s", ends.Span())
	}
	if _, err := ends.NewSession(4); !errors.Is(err, ErrSpan) {
		t.Errorf("session on an ends-only shard: %v, want ErrSpan", err)
	}
	if _, err := all.NewSessionSpan(Span{2, h.Layers + 1}, 4); !errors.Is(err, ErrSpan) {
		t.Errorf("session beyond the shard: %v, want ErrSpan", err)
	}
	var sessions []*Session
	for _, sp := range []Span{{0, 1}, {1, 3}, {3, h.Layers}} {
		sess, err := all.NewSessionSpan(sp, 32)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	var logits []float32
	for _, toks := range [][]int32{{1, 403, 407, 261, 378, 5, 9}, {100}, {200}, {7}} {
		x := make([]float32, len(toks)*h.Dim)
		if err := ends.Embed(x, toks); err != nil {
			t.Fatal(err)
		}
		for _, sess := range sessions {
			if err := sess.Forward(t.Context(), x); err != nil {
				t.Fatal(err)
			}
		}
		logits = make([]float32, len(toks)*h.Vocab)
		if err := ends.Logits(logits, x, len(toks)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(floatBytes(logits), floatBytes(want)) {
		t.Error("sub-span sessions give different logits from separate shards")
	}
	kv, err := sessions[1].ExportKV()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := all.NewSessionSpan(Span{1, 3}, 32)
	if err := other.ImportKV(kv); err != nil {
		t.Fatalf("import into the same sub-span: %v", err)
	}
	if other.Len() != sessions[1].Len() {
		t.Errorf("imported %d positions, want %d", other.Len(), sessions[1].Len())
	}
	wrong, _ := all.NewSessionSpan(Span{0, 2}, 32)
	if err := wrong.ImportKV(kv); !errors.Is(err, ErrKVFormat) {
		t.Errorf("import into another sub-span: %v, want ErrKVFormat", err)
	}
}
