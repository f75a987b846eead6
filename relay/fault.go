package relay

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultKind is a way a server misbehaves on purpose, for tests, demos and
// researchers measuring verification.
type FaultKind int

// Fault kinds. Every one of them computes the step honestly (so the KV
// cache stays right) and then lies about, delays or drops its output;
// replays, whose outputs nobody reads, are run honestly.
const (
	NoFault      FaultKind = iota
	FaultNoise             // adds Gaussian noise (10% of the output's RMS) to the output
	FaultZero              // sends zeros
	FaultStale             // sends the previous step's output again (zeros on the first)
	FaultBitflip           // flips one random bit of the encoded output
	FaultSlow              // waits Fault.Delay before sending the output
	FaultDrop              // sends nothing at all for the step
)

var faultNames = map[FaultKind]string{FaultNoise: "noise", FaultZero: "zero", FaultStale: "stale",
	FaultBitflip: "bitflip", FaultSlow: "slow", FaultDrop: "drop"}

// String returns the kind's name as ParseFault accepts it.
func (k FaultKind) String() string {
	if s, ok := faultNames[k]; ok {
		return s
	}
	return "none"
}

// ErrFault is returned for an invalid fault description.
var ErrFault = errors.New("relay: invalid fault")

// Fault makes a server misbehave on a fraction of its steps.
type Fault struct {
	Kind  FaultKind
	Rate  float64       // probability per step, (0, 1]; 1 when not given
	Delay time.Duration // for FaultSlow (default 10 s)
	Seed  uint64        // seeds which steps are hit and the noise
}

// ParseFault parses "kind[:rate]" with kind one of noise, zero, stale,
// bitflip, slow, drop and rate a probability in (0, 1] (default 1); ""
// or "none" is no fault.
func ParseFault(s string) (Fault, error) {
	if s == "" || s == "none" {
		return Fault{}, nil
	}
	name, rateStr, hasRate := strings.Cut(s, ":")
	f := Fault{Rate: 1}
	for k, n := range faultNames {
		if n == name {
			f.Kind = k
		}
	}
	if f.Kind == NoFault {
		return Fault{}, fmt.Errorf("%w: %q (want noise, zero, stale, bitflip, slow or drop, with an optional :rate)", ErrFault, name)
	}
	if hasRate {
		r, err := strconv.ParseFloat(rateStr, 64)
		if err != nil || !(r > 0 && r <= 1) {
			return Fault{}, fmt.Errorf("%w: rate %q (want a probability in (0, 1])", ErrFault, rateStr)
		}
		f.Rate = r
	}
	return f, nil
}

// String returns the description ParseFault accepts.
func (f Fault) String() string {
	if f.Kind == NoFault {
		return "none"
	}
	if f.Rate > 0 && f.Rate < 1 {
		return fmt.Sprintf("%s:%g", f.Kind, f.Rate)
	}
	return f.Kind.String()
}

// faulter applies a Fault to a server's steps.
type faulter struct {
	f    Fault
	mu   sync.Mutex
	rng  *rand.Rand
	last map[SessionID][]byte
	// hit records, per session and step, whether the step's latest
	// attempt was faulted (a step rolled back and run again counts once);
	// retired counts the hits of forgotten sessions.
	hit     map[SessionID]map[uint64]bool
	retired int64
}

func newFaulter(f Fault) *faulter {
	if f.Kind == NoFault {
		return nil
	}
	if f.Rate <= 0 || f.Rate > 1 {
		f.Rate = 1
	}
	if f.Delay <= 0 {
		f.Delay = 10 * time.Second
	}
	return &faulter{f: f, rng: rand.New(rand.NewPCG(f.Seed, 0x5eed)),
		last: make(map[SessionID][]byte), hit: make(map[SessionID]map[uint64]bool)}
}

// apply returns the output to send for step seq of session id (the
// encoded honest output x/out, or a lie), how long to wait first, and
// whether to send nothing. The steps of a replay, which rebuild a
// replacement's KV cache and whose outputs nobody reads, are left alone.
func (fl *faulter) apply(id SessionID, seq uint64, enc Encoding, x []float32, out []byte) (lie []byte, delay time.Duration, drop bool) {
	if fl == nil || seq&replaySeq != 0 {
		return out, 0, false
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	hits := fl.hit[id]
	if hits == nil {
		hits = make(map[uint64]bool)
		fl.hit[id] = hits
	}
	lie, delay, drop = fl.fault(id, enc, x, out)
	hits[seq] = drop || delay > 0 || !bytes.Equal(lie, out)
	return lie, delay, drop
}

func (fl *faulter) fault(id SessionID, enc Encoding, x []float32, out []byte) (lie []byte, delay time.Duration, drop bool) {
	prev := fl.last[id]
	fl.last[id] = out
	if fl.rng.Float64() >= fl.f.Rate {
		return out, 0, false
	}
	switch fl.f.Kind {
	case FaultNoise:
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		sd := 0.1 * math.Sqrt(ss/float64(max(len(x), 1)))
		if sd == 0 {
			sd = 0.1
		}
		y := make([]float32, len(x))
		for i, v := range x {
			y[i] = v + float32(fl.rng.NormFloat64()*sd)
		}
		if b, err := EncodeActivations(enc, y); err == nil {
			return b, 0, false
		}
		return flipBit(out, fl.rng), 0, false
	case FaultZero:
		b, _ := EncodeActivations(enc, make([]float32, len(x)))
		return b, 0, false
	case FaultStale:
		if len(prev) == len(out) {
			return prev, 0, false
		}
		b, _ := EncodeActivations(enc, make([]float32, len(x)))
		return b, 0, false
	case FaultBitflip:
		return flipBit(out, fl.rng), 0, false
	case FaultSlow:
		return out, fl.f.Delay, false
	case FaultDrop:
		return nil, 0, true
	}
	return out, 0, false
}

func flipBit(b []byte, rng *rand.Rand) []byte {
	c := append([]byte(nil), b...)
	if len(c) > 0 {
		i := rng.IntN(len(c) * 8)
		c[i/8] ^= 1 << (i % 8)
	}
	return c
}

func (fl *faulter) forget(id SessionID) {
	if fl != nil {
		fl.mu.Lock()
		delete(fl.last, id)
		fl.retired += countHits(fl.hit[id])
		delete(fl.hit, id)
		fl.mu.Unlock()
	}
}

// hits returns the steps whose latest attempt the fault changed, delayed
// or dropped.
func (fl *faulter) hits() int64 {
	if fl == nil {
		return 0
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	n := fl.retired
	for _, h := range fl.hit {
		n += countHits(h)
	}
	return n
}

func countHits(h map[uint64]bool) int64 {
	var n int64
	for _, hit := range h {
		if hit {
			n++
		}
	}
	return n
}
