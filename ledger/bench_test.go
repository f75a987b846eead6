package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// benchEntries returns n distinct valid work entries, to append in turn.
func benchEntries(b *testing.B, f *ledgerFixture, n int) []Entry {
	b.Helper()
	es := make([]Entry, n)
	for i := range es {
		es[i] = f.work(b)
	}
	return es
}

func reportRate(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unit)
}

// BenchmarkAppendSingle appends one work record per op, each durable (one
// commit and fsync each).
func BenchmarkAppendSingle(b *testing.B) {
	f := newLedgerFixture(b)
	l := f.open(b, testPath(b))
	es := benchEntries(b, f, 64)
	b.ReportAllocs()
	b.SetBytes(int64(headerLen + len(es[0].Payload) + SigLen))
	n := 0
	for b.Loop() {
		e := es[n%len(es)]
		if _, err := l.Append(e.Kind, e.Payload); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportRate(b, n, "appends/s")
}

// BenchmarkAppendBatched256 appends 256 work records per op, in one
// commit.
func BenchmarkAppendBatched256(b *testing.B) {
	const batch = 256
	f := newLedgerFixture(b)
	l := f.open(b, testPath(b))
	es := benchEntries(b, f, batch)
	b.ReportAllocs()
	b.SetBytes(int64(batch * (headerLen + len(es[0].Payload) + SigLen)))
	n := 0
	for b.Loop() {
		if _, err := l.AppendMany(es); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	reportRate(b, n, "records/s")
}

// BenchmarkAppendConcurrent appends one work record per op from
// GOMAXPROCS×16 goroutines: concurrent appends share commits.
func BenchmarkAppendConcurrent(b *testing.B) {
	f := newLedgerFixture(b)
	l := f.open(b, testPath(b))
	es := benchEntries(b, f, 64)
	b.ReportAllocs()
	b.SetBytes(int64(headerLen + len(es[0].Payload) + SigLen))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e := es[i%len(es)]
			if _, err := l.Append(e.Kind, e.Payload); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	reportRate(b, b.N, "appends/s")
}

// verify1MRecords is the length of BenchmarkVerify1M's chain, genesis
// excluded.
const verify1MRecords = 1_000_000

// BenchmarkVerify1M verifies a chain of a million reputation records. The
// chain is built once, into the system's temporary directory, and kept
// for later runs (delete strata-ledger-v*-verify1m.* to rebuild it).
func BenchmarkVerify1M(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a chain of a million records")
	}
	l := openVerify1M(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := l.Verify(nil); err != nil {
			b.Fatal(err)
		}
		n += int(l.Len())
	}
	reportRate(b, n, "records/s")
}

// openVerify1M opens the cached chain of BenchmarkVerify1M, building it
// if it is missing or incomplete.
func openVerify1M(b *testing.B) *Ledger {
	b.Helper()
	base := filepath.Join(os.TempDir(), fmt.Sprintf("strata-ledger-v%d-verify1m", Version))
	dbPath, keyPath := base+".db", base+".key"
	if l, err := openCached(dbPath, keyPath); err == nil {
		if l.Len() == verify1MRecords+1 {
			b.Cleanup(func() { l.Close() })
			return l
		}
		l.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.Logf("rebuilding the cached chain: %v", err)
	}

	start := time.Now()
	tmpDB, tmpKey := dbPath+".tmp", keyPath+".tmp"
	os.Remove(tmpDB)
	key := newTestKey(b)
	raw, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(tmpKey, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	l, err := Open(tmpDB, key)
	if err != nil {
		b.Fatal(err)
	}
	f := &ledgerFixture{owner: key, other: newTestKey(b), rng: mrand.New(mrand.NewPCG(1, 2))}
	for done := 0; done < verify1MRecords; {
		entries := make([]Entry, min(4096, verify1MRecords-done))
		for i := range entries {
			entries[i] = f.reputation(b)
		}
		done += len(entries)
		if _, err := l.AppendMany(entries); err != nil {
			l.Close()
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	// Rename the key first: a database without its key is rebuilt.
	if err := os.Rename(tmpKey, keyPath); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmpDB, dbPath); err != nil {
		b.Fatal(err)
	}
	b.Logf("built a chain of %d records in %v, cached in %s", verify1MRecords+1, time.Since(start).Round(time.Millisecond), dbPath)
	l, err = openCached(dbPath, keyPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func openCached(dbPath, keyPath string) (*Ledger, error) {
	if _, err := os.Stat(dbPath); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, err
	}
	return Open(dbPath, key)
}
