package ledger

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// The crash test's child process appends to the ledger at $crashDBEnv,
// owned by the key in the file at $crashKeyEnv.
const (
	crashDBEnv  = "STRATA_LEDGER_CRASH_DB"
	crashKeyEnv = "STRATA_LEDGER_CRASH_KEY"
)

// TestCrashHelper is TestCrashRecovery's child process: it appends work
// receipts until it is killed, from several goroutines, by Append and by
// AppendMany of 1 to 50 records, and prints "ack SEQ HASH" for each record
// once its append returned (the record is durable).
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("runs only as TestCrashRecovery's child process")
	}
	rawKey, err := os.ReadFile(os.Getenv(crashKeyEnv))
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.UnmarshalPrivateKey(rawKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	client := newTestKey(t)
	var outMu sync.Mutex
	ack := func(recs []Record) error {
		var b bytes.Buffer
		for _, r := range recs {
			h := r.Hash()
			fmt.Fprintf(&b, "ack %d %s\n", r.Seq, hex.EncodeToString(h[:]))
		}
		outMu.Lock()
		defer outMu.Unlock()
		_, err := os.Stdout.Write(b.Bytes()) // unbuffered: one write per append
		return err
	}
	const goroutines = 3
	errs := make(chan error, 2*goroutines)
	for g := range goroutines {
		go func() {
			// A helper's t.Fatal ends the goroutine too.
			defer func() { errs <- fmt.Errorf("appender %d stopped", g) }()
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			for {
				var recs []Record
				var err error
				if rng.IntN(2) == 0 {
					var r Record
					r, err = l.Append(KindWork, mustMarshal(t, newReceipt(t, rng, key, client)))
					recs = []Record{r}
				} else {
					entries := make([]Entry, 1+rng.IntN(50))
					for i := range entries {
						entries[i] = Entry{Kind: KindWork, Payload: mustMarshal(t, newReceipt(t, rng, key, client))}
					}
					recs, err = l.AppendMany(entries)
				}
				if err == nil {
					err = ack(recs)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	err = <-errs
	fmt.Printf("fail %v\n", err)
	t.Fatal(err)
}

// An acknowledged record survives the process being killed at any moment,
// and the chain stays valid: the test kills its child process (see
// TestCrashHelper) round after round, at random points while it appends.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashDBEnv) != "" {
		t.Skip("this is the child process")
	}
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	dir := t.TempDir()
	path, keyPath := filepath.Join(dir, "ledger.db"), filepath.Join(dir, "key")
	key := newTestKey(t)
	rawKey, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, rawKey, 0o600); err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))
	acked := make(map[uint64][32]byte)
	for round := range rounds {
		wantAcks := 1 + rng.IntN(200)
		delay := time.Duration(rng.Int64N(int64(50*time.Millisecond) + 1))
		n := crashRound(t, path, keyPath, wantAcks, delay, acked)

		l, err := Open(path, key)
		if err != nil {
			t.Fatalf("round %d (%d acks): Open after the crash = %v", round, n, err)
		}
		if err := l.Verify(nil); err != nil {
			l.Close()
			t.Fatalf("round %d (%d acks): Verify after the crash = %v", round, n, err)
		}
		if err := l.Raw(0, l.Len(), func(seq uint64, raw []byte) error {
			if want, ok := acked[seq]; ok && blakeOf(raw) != want {
				return fmt.Errorf("acknowledged record %d has hash %x, was acknowledged as %x", seq, blakeOf(raw), want)
			}
			return nil
		}); err != nil {
			l.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		for seq := range acked {
			if seq >= l.Len() {
				l.Close()
				t.Fatalf("round %d: acknowledged record %d lost: the ledger ends at %d", round, seq, l.Len()-1)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d acknowledged records", rounds, len(acked))
}

// crashRound runs the child until it acknowledged wantAcks records or
// delay passed after its first acknowledgement, kills it, and adds what it
// acknowledged to acked. It returns the round's acknowledgements.
func crashRound(t *testing.T, path, keyPath string, wantAcks int, delay time.Duration, acked map[uint64][32]byte) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path, crashKeyEnv+"="+keyPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // at EOF: a line cut short by the kill is not an acknowledgement
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	var other []string
	n := 0
	parse := func(line string) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "ack" {
			other = append(other, line)
			return
		}
		seq, err1 := strconv.ParseUint(f[1], 10, 64)
		h, err2 := hex.DecodeString(f[2])
		if err1 != nil || err2 != nil || len(h) != 32 {
			t.Errorf("child printed %q", line)
			return
		}
		hash := [32]byte(h)
		if old, ok := acked[seq]; ok && old != hash {
			t.Errorf("record %d acknowledged as %x, and earlier as %x", seq, hash, old)
		}
		acked[seq] = hash
		n++
	}
	var timer <-chan time.Time
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	exited := false
wait:
	for n < wantAcks {
		select {
		case line, ok := <-lines:
			if !ok {
				exited = true
				break wait
			}
			parse(line)
			if n == 1 && timer == nil {
				timer = time.After(delay)
			}
		case <-timer:
			break wait
		case <-deadline.C:
			break wait
		}
	}
	cmd.Process.Kill()
	// What the child wrote before it died was acknowledged too.
	for line := range lines {
		parse(line)
	}
	cmd.Wait()
	if exited || n == 0 || len(other) > 0 || t.Failed() {
		t.Fatalf("child exited early (%d acks, wanted %d); its output:\n%s\n%s", n, wantAcks, strings.Join(other, "\n"), stderr.Bytes())
	}
	return n
}
