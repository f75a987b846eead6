package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	bolt "go.etcd.io/bbolt"
)

// tamperOffsets are the bytes of a record of encoded length n to flip: the
// first and last byte of every header field, bytes across the payload,
// every 8th signature byte and the last byte.
func tamperOffsets(n int) []int {
	payloadLen := n - headerLen - SigLen
	offs := []int{
		0,    // version
		1, 8, // seq
		9, 24, 40, // prev
		41,     // kind
		42, 49, // time
		50, 53, // payload length
	}
	for _, p := range []int{0, 1, 2, payloadLen / 3, payloadLen / 2, 2 * payloadLen / 3, payloadLen - 2, payloadLen - 1} {
		offs = append(offs, headerLen+p)
	}
	for s := 0; s < SigLen; s += 8 {
		offs = append(offs, headerLen+payloadLen+s)
	}
	offs = append(offs, n-1)
	slices.Sort(offs)
	return slices.Compact(offs)
}

// editDB runs fn in a write transaction of the bbolt database at path,
// bypassing the ledger.
func editDB(t *testing.T, path string, fn func(b *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketRecords)) }); err != nil {
		db.Close()
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// openAndVerify opens the ledger at path and verifies it.
func openAndVerify(path string, key crypto.PrivKey) error {
	l, err := Open(path, key)
	if err != nil {
		return fmt.Errorf("Open: %w", err)
	}
	defer l.Close()
	return l.Verify(nil)
}

// wantTamperError checks that err is a verification error naming record seq.
func wantTamperError(t *testing.T, err error, seq uint64, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: Open+Verify = nil, want an error naming record %d", what, seq)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: Open+Verify = %v, want it to wrap ErrInvalid", what, err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`\brecord %d\b`, seq)).MatchString(err.Error()) {
		t.Fatalf("%s: Open+Verify = %q, want it to name record %d", what, err, seq)
	}
}

// tamperedLedger builds a closed ledger of n mixed records at a fresh path.
func tamperedLedger(t *testing.T, n int) (f *ledgerFixture, path string, raws [][]byte) {
	t.Helper()
	f = newLedgerFixture(t)
	path = testPath(t)
	l, err := Open(path, f.owner)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n - 1 {
		e := f.mixed(t, i)
		if i%3 == 0 {
			_, err = l.Append(e.Kind, e.Payload)
		} else {
			err = l.AppendAsync(e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	editDB(t, path, func(b *bolt.Bucket) error {
		return b.ForEach(func(_, v []byte) error {
			raws = append(raws, bytes.Clone(v))
			return nil
		})
	})
	if len(raws) != n {
		t.Fatalf("ledger holds %d records, want %d", len(raws), n)
	}
	if err := openAndVerify(path, f.owner); err != nil {
		t.Fatalf("untampered ledger: %v", err)
	}
	return f, path, raws
}

// Every byte of every record is covered: flipping any one of them makes
// Open or Verify fail, naming the record. (In -short mode, only the low
// bit is flipped, and the restored chain is verified once per record.)
func TestTamperedByteIsDetected(t *testing.T) {
	f, path, raws := tamperedLedger(t, 20)
	kinds := make(map[Kind]bool)
	for seq, raw := range raws {
		r, err := DecodeRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		kinds[r.Kind] = true
		masks := []byte{0x01}
		if seq%5 == 0 && !testing.Short() {
			masks = append(masks, 0x80)
		}
		for _, off := range tamperOffsets(len(raw)) {
			for _, mask := range masks {
				flip := func(b *bolt.Bucket) error {
					v := bytes.Clone(b.Get(seqKey(uint64(seq))))
					v[off] ^= mask
					return b.Put(seqKey(uint64(seq)), v)
				}
				editDB(t, path, flip)
				wantTamperError(t, openAndVerify(path, f.owner), uint64(seq),
					fmt.Sprintf("%s record %d, byte %d of %d ^ %#x", r.Kind, seq, off, len(raw), mask))
				editDB(t, path, flip)
				if testing.Short() {
					continue
				}
				if err := openAndVerify(path, f.owner); err != nil {
					t.Fatalf("record %d byte %d restored: Open+Verify = %v", seq, off, err)
				}
			}
		}
		if err := openAndVerify(path, f.owner); err != nil {
			t.Fatalf("record %d restored: Open+Verify = %v", seq, err)
		}
	}
	for _, k := range []Kind{KindGenesis, KindWork, KindSpend, KindReputation, KindForkProof} {
		if !kinds[k] {
			t.Errorf("the tampered chain has no %s record", k)
		}
	}
}

func TestTamperedChainIsDetected(t *testing.T) {
	tests := []struct {
		name string
		edit func(b *bolt.Bucket, raws [][]byte) error
		seq  uint64
	}{
		{"middle record deleted", func(b *bolt.Bucket, _ [][]byte) error { return b.Delete(seqKey(10)) }, 10},
		{"genesis deleted", func(b *bolt.Bucket, _ [][]byte) error { return b.Delete(seqKey(0)) }, 0},
		{"records swapped", func(b *bolt.Bucket, raws [][]byte) error {
			if err := b.Put(seqKey(5), raws[6]); err != nil {
				return err
			}
			return b.Put(seqKey(6), raws[5])
		}, 5},
		{"record replaced by its successor", func(b *bolt.Bucket, raws [][]byte) error { return b.Put(seqKey(7), raws[8]) }, 7},
		{"record emptied", func(b *bolt.Bucket, _ [][]byte) error { return b.Put(seqKey(12), []byte{}) }, 12},
		{"record truncated", func(b *bolt.Bucket, raws [][]byte) error { return b.Put(seqKey(3), raws[3][:len(raws[3])-1]) }, 3},
		{"record extended", func(b *bolt.Bucket, raws [][]byte) error { return b.Put(seqKey(4), append(bytes.Clone(raws[4]), 0)) }, 4},
		{"head truncated", func(b *bolt.Bucket, raws [][]byte) error {
			return b.Put(seqKey(uint64(len(raws)-1)), raws[len(raws)-1][:headerLen])
		}, 19},
		{"head replaced by an older record", func(b *bolt.Bucket, raws [][]byte) error {
			return b.Put(seqKey(uint64(len(raws)-1)), raws[len(raws)-2])
		}, 19},
		{"a record after a gap", func(b *bolt.Bucket, raws [][]byte) error { return b.Put(seqKey(25), raws[len(raws)-1]) }, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, path, raws := tamperedLedger(t, 20)
			editDB(t, path, func(b *bolt.Bucket) error { return tt.edit(b, raws) })
			wantTamperError(t, openAndVerify(path, f.owner), tt.seq, tt.name)
		})
	}
}
