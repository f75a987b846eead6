package shard

import (
	"errors"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/gguf"
)

// FuzzImportKV feeds arbitrary bytes to ImportKV, the decoder of KV caches
// that migrate from other nodes: it must return an error or import, never
// panic, and an import must export to the same bytes.
func FuzzImportKV(f *testing.F) {
	file, err := gguf.Open(testenv.Shared(f, "models/stories260K.gguf"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { file.Close() })
	pool := kernels.NewPool(1)
	f.Cleanup(pool.Close)
	s, err := Open(file, Config{Span: Span{1, 3}, Pool: pool, KVType: KVF16})
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := s.NewSession(8)
	x := make([]float32, 2*s.HParams().Dim)
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	if err := s.Forward(seed, x); err != nil {
		f.Fatal(err)
	}
	good, _ := seed.ExportKV()
	seed.Close()
	f.Add(good)
	f.Add(good[:24])
	f.Add([]byte("SKV1"))
	sess, _ := s.NewSession(8)
	f.Fuzz(func(t *testing.T, b []byte) {
		err := sess.ImportKV(b)
		if err != nil {
			if !errors.Is(err, ErrKVFormat) && !errors.Is(err, ErrContext) {
				t.Fatalf("ImportKV error %v is neither ErrKVFormat nor ErrContext", err)
			}
			return
		}
		out, err := sess.ExportKV()
		if err != nil || string(out) != string(b) {
			t.Fatalf("export after import differs (err %v)", err)
		}
	})
}
