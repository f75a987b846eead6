package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestParseLink(t *testing.T) {
	tests := []struct {
		in   string
		want Link
	}{
		{"", Link{}},
		{"none", Link{}},
		{"  none ", Link{}},
		{"rtt=20ms,bw=100Mbit,jitter=2ms,loss=0.1%", Link{Latency: 10 * time.Millisecond, Bandwidth: 100e6, Jitter: 2 * time.Millisecond, Loss: 0.1 / 100}},
		{"loss=0.1%,jitter=2ms,bw=100Mbit,rtt=20ms", Link{Latency: 10 * time.Millisecond, Bandwidth: 100e6, Jitter: 2 * time.Millisecond, Loss: 0.1 / 100}},
		{" rtt = 1s , seed = 42 ", Link{Latency: 500 * time.Millisecond, Seed: 42}},
		{"latency=5ms", Link{Latency: 5 * time.Millisecond}},
		{"latency=1.5ms", Link{Latency: 1500 * time.Microsecond}},
		{"bw=800bit", Link{Bandwidth: 800}},
		{"bw=800bps", Link{Bandwidth: 800}},
		{"bw=64Kbit", Link{Bandwidth: 64e3}},
		{"bw=64kbit", Link{Bandwidth: 64e3}},
		{"bw=64Kbps", Link{Bandwidth: 64e3}},
		{"bw=100Mbps", Link{Bandwidth: 100e6}},
		{"bw=100mbit", Link{Bandwidth: 100e6}},
		{"bw=1.5Gbit", Link{Bandwidth: 1.5e9}},
		{"bw=10gbps", Link{Bandwidth: 10e9}},
		{"bw=0Mbit", Link{}},
		{"loss=0.001", Link{Loss: 0.001}},
		{"loss=5%", Link{Loss: 0.05}},
		{"loss=0", Link{}},
		{"jitter=0s", Link{}},
		{"RTT=2ms", Link{Latency: time.Millisecond}},
	}
	for _, tt := range tests {
		got, err := ParseLink(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLink(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLinkErrors(t *testing.T) {
	tests := []struct {
		in, part string // part: what the message must quote
	}{
		{"rtt", "rtt"},
		{"rtt=", "rtt="},
		{"=5ms", "=5ms"},
		{"rtt=abc", "rtt=abc"},
		{"rtt=20", "rtt=20"},
		{"rtt=-1ms", "rtt=-1ms"},
		{"latency=-1ms", "latency=-1ms"},
		{"jitter=-1ms", "jitter=-1ms"},
		{"rtt=10ms,latency=5ms", "latency=5ms"},
		{"jitter=1ms,jitter=2ms", "jitter=2ms"},
		{"bw=100", "bw=100"},
		{"bw=100MB", "bw=100MB"},
		{"bw=100MiB", "bw=100MiB"},
		{"bw=Mbit", "bw=Mbit"},
		{"bw=-5Mbit", "bw=-5Mbit"},
		{"bw=1.2.3Mbit", "bw=1.2.3Mbit"},
		{"loss=100%", "loss=100%"},
		{"loss=1", "loss=1"},
		{"loss=-0.1", "loss=-0.1"},
		{"loss=NaN", "loss=NaN"},
		{"loss=x%", "loss=x%"},
		{"seed=-1", "seed=-1"},
		{"delay=5ms", "delay=5ms"},
		{"rtt=20ms,,bw=1Mbit", ""},
		{"rtt=20ms;bw=1Mbit", "rtt=20ms;bw=1Mbit"},
	}
	for _, tt := range tests {
		got, err := ParseLink(tt.in)
		if !errors.Is(err, ErrLink) {
			t.Errorf("ParseLink(%q) = %+v, %v, want an error wrapping ErrLink", tt.in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+tt.part+`"`) {
			t.Errorf("ParseLink(%q) error %q does not quote %q", tt.in, err, tt.part)
		}
	}
}

func TestLinkStringRoundTrip(t *testing.T) {
	links := []Link{
		{},
		{Seed: 9},
		{Latency: 10 * time.Millisecond, Bandwidth: 100e6, Jitter: 2 * time.Millisecond, Loss: 0.001},
		{Latency: 12500 * time.Microsecond},
		{Bandwidth: 1.5e9},
		{Bandwidth: 1234.5},
		{Bandwidth: 0.25},
		{Bandwidth: 3e12},
		{Loss: 1.0 / 3},
		{Loss: 0.07},
		{Jitter: time.Nanosecond, Seed: 1<<64 - 1},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		links = append(links, Link{
			Latency:   time.Duration(rng.Int64N(int64(time.Second))),
			Bandwidth: rng.Float64() * 1e10,
			Jitter:    time.Duration(rng.Int64N(int64(time.Second))),
			Loss:      rng.Float64(),
			Seed:      rng.Uint64(),
		})
	}
	for _, l := range links {
		s := l.String()
		got, err := ParseLink(s)
		if err != nil || got != l {
			t.Errorf("ParseLink(%q) = %+v, %v, want %+v", s, got, err, l)
		}
	}
	for l, want := range map[Link]string{
		{}: "none",
		{Latency: 10 * time.Millisecond, Bandwidth: 100e6, Jitter: 2 * time.Millisecond, Loss: 0.001, Seed: 3}: "latency=10ms,bw=100Mbit,jitter=2ms,loss=0.1%,seed=3",
		{Bandwidth: 64e3}: "bw=64Kbit",
	} {
		if got := l.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", l, got, want)
		}
	}
}

func TestLinkRTO(t *testing.T) {
	for lat, want := range map[time.Duration]time.Duration{
		0:                      200 * time.Millisecond,
		25 * time.Millisecond:  200 * time.Millisecond,
		100 * time.Millisecond: 400 * time.Millisecond,
	} {
		if got := (Link{Latency: lat}).RTO(); got != want {
			t.Errorf("Link{Latency: %v}.RTO() = %v, want %v", lat, got, want)
		}
	}
}

func TestLinkZeroWrapsNothing(t *testing.T) {
	s := &sinkStream{}
	if got := (Link{Seed: 4}).Wrap(s); got != network.Stream(s) {
		t.Errorf("zero Link: Wrap(s) = %T, want s itself", got)
	}
	if got := (Link{}).WrapWriter(s); got != io.WriteCloser(s) {
		t.Errorf("zero Link: WrapWriter(s) = %T, want s itself", got)
	}
}

func TestLinkInvalidPanics(t *testing.T) {
	for _, l := range []Link{
		{Latency: -1},
		{Jitter: -1},
		{Bandwidth: -1},
		{Loss: 1},
		{Loss: -0.5},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v.Wrap did not panic", l)
				}
			}()
			l.Wrap(&sinkStream{})
		}()
	}
}

// arrival is one Write that reached a sinkStream.
type arrival struct {
	at time.Time
	n  int
}

var errSink = errors.New("sink: write failed")

// sinkStream is an in-memory network.Stream that records when each write
// arrives. Methods it does not define panic (the embedded Stream is nil).
type sinkStream struct {
	network.Stream

	mu           sync.Mutex
	data         []byte
	arrivals     []arrival
	fail         bool // writes fail with errSink
	closedAt     time.Time
	closed       bool
	closedWrite  bool
	reset        bool
	resetCode    network.StreamErrorCode
	readDeadline time.Time
}

func (s *sinkStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.reset:
		return 0, network.ErrReset
	case s.closed || s.closedWrite:
		return 0, net.ErrClosed
	case s.fail:
		return 0, errSink
	}
	s.arrivals = append(s.arrivals, arrival{time.Now(), len(p)})
	s.data = append(s.data, p...)
	return len(p), nil
}

func (s *sinkStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.closedAt = true, time.Now()
	return nil
}

func (s *sinkStream) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedWrite, s.closedAt = true, time.Now()
	return nil
}

func (s *sinkStream) Reset() error { return s.ResetWithError(0) }

func (s *sinkStream) ResetWithError(code network.StreamErrorCode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset, s.resetCode = true, code
	return nil
}

func (s *sinkStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readDeadline = t
	return nil
}

func (s *sinkStream) snapshot() (data []byte, arrivals []arrival) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.data), slices.Clone(s.arrivals)
}

// exited reports whether ws's delivery goroutine has exited.
func exited(ws any) bool {
	var sh *shaper
	switch w := ws.(type) {
	case *linkStream:
		sh = w.sh
	case *linkWriter:
		sh = w.sh
	default:
		panic("not a wrapped stream")
	}
	select {
	case <-sh.done:
		return true
	default:
		return false
	}
}

func mustWrite(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	if n, err := w.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write(%d bytes) = %d, %v, want %d, nil", len(p), n, err, len(p))
	}
}

func TestLinkLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &sinkStream{}
		ls := Link{Latency: 20 * time.Millisecond}.Wrap(sink)
		t0 := time.Now()
		mustWrite(t, ls, []byte("hello"))
		if d := time.Since(t0); d != 0 {
			t.Errorf("Write took %v, want 0 (queued)", d)
		}
		time.Sleep(19 * time.Millisecond)
		synctest.Wait()
		if data, _ := sink.snapshot(); len(data) != 0 {
			t.Errorf("after 19ms the sink holds %q, want nothing", data)
		}
		if err := ls.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		data, arr := sink.snapshot()
		if string(data) != "hello" || len(arr) != 1 || arr[0].at.Sub(t0) != 20*time.Millisecond {
			t.Errorf("delivered %q in %v, want \"hello\" once after 20ms", data, arr)
		}
		if !sink.closed || !exited(ls) {
			t.Errorf("after Close: sink closed %v, goroutine exited %v; want both", sink.closed, exited(ls))
		}
	})
}

func TestLinkWrapWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &sinkStream{}
		w := Link{Latency: 7 * time.Millisecond}.WrapWriter(sink)
		t0 := time.Now()
		mustWrite(t, w, []byte("a"))
		mustWrite(t, w, []byte("b"))
		if err := w.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		if d := time.Since(t0); d != 7*time.Millisecond {
			t.Errorf("Close returned after %v, want 7ms", d)
		}
		if data, _ := sink.snapshot(); string(data) != "ab" || !sink.closed || !exited(w) {
			t.Errorf("got %q, closed %v, exited %v; want \"ab\", true, true", data, sink.closed, exited(w))
		}
		if _, err := w.Write([]byte("c")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %v, want net.ErrClosed", err)
		}
	})
}

func TestLinkJitterKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2000
		l := Link{Latency: 5 * time.Millisecond, Jitter: 20 * time.Millisecond, Seed: 1}
		sink := &sinkStream{}
		ls := l.Wrap(sink)
		sent := make([]time.Time, n)
		for i := range n {
			sent[i] = time.Now()
			mustWrite(t, ls, binary.BigEndian.AppendUint32(nil, uint32(i)))
			time.Sleep(100 * time.Microsecond)
		}
		if err := ls.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		data, arr := sink.snapshot()
		if len(arr) != n || len(data) != 4*n {
			t.Fatalf("got %d writes, %d bytes; want %d, %d", len(arr), len(data), n, 4*n)
		}
		delays := map[time.Duration]bool{}
		for i := range n {
			if got := binary.BigEndian.Uint32(data[4*i:]); got != uint32(i) {
				t.Fatalf("write %d carries sequence number %d", i, got)
			}
			d := arr[i].at.Sub(sent[i])
			if d < l.Latency || d >= l.Latency+l.Jitter {
				t.Errorf("write %d delayed %v, want in [%v, %v)", i, d, l.Latency, l.Latency+l.Jitter)
			}
			if i > 0 && arr[i].at.Before(arr[i-1].at) {
				t.Errorf("write %d arrived before write %d", i, i-1)
			}
			delays[d] = true
		}
		if len(delays) < n/2 {
			t.Errorf("only %d distinct delays among %d writes: jitter not applied", len(delays), n)
		}
	})
}

func TestLinkBandwidth(t *testing.T) {
	const size = 1 << 20
	// 1 MiB at 80 Mbit/s: 8388608 bits / 80e6 bit/s = 104.8576 ms.
	const want = 104857600 * time.Nanosecond
	for _, tt := range []struct {
		name  string
		write int
		lat   time.Duration
	}{
		{"one write", size, 0},
		{"4KiB writes", 4 << 10, 0},
		{"64KiB writes + latency", 64 << 10, 10 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sink := &sinkStream{}
				ls := Link{Latency: tt.lat, Bandwidth: 80e6}.Wrap(sink)
				t0 := time.Now()
				payload := bytes.Repeat([]byte{0xa5}, size)
				for p := range slices.Chunk(payload, tt.write) {
					mustWrite(t, ls, p)
				}
				if d := time.Since(t0); d != 0 {
					t.Errorf("writes took %v, want 0 (1 MiB fits the queue)", d)
				}
				if err := ls.Close(); err != nil {
					t.Fatalf("Close() = %v", err)
				}
				data, arr := sink.snapshot()
				if !bytes.Equal(data, payload) {
					t.Fatalf("delivered %d bytes, want the %d written", len(data), size)
				}
				if got, w := arr[len(arr)-1].at.Sub(t0), want+tt.lat; got < w || got > w+time.Microsecond {
					t.Errorf("last byte after %v, want %v", got, w)
				}
				// Delivery is progressive: the first 64 KiB arrive after
				// their own transmission time, 6.5536 ms.
				if got, w := arr[0].at.Sub(t0), tt.lat+want/16; got > w+time.Microsecond {
					t.Errorf("first bytes after %v, want <= %v", got, w)
				}
			})
		})
	}
}

func TestLinkLossRepeatable(t *testing.T) {
	l := Link{Latency: time.Millisecond, Loss: 0.1}
	run := func(seed uint64) []time.Duration {
		var delays []time.Duration
		synctest.Test(t, func(t *testing.T) {
			l := l
			l.Seed = seed
			sink := &sinkStream{}
			ls := l.Wrap(sink)
			t0 := time.Now()
			for range 500 {
				mustWrite(t, ls, []byte{1})
				time.Sleep(10 * time.Millisecond)
			}
			if err := ls.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			_, arr := sink.snapshot()
			for i, a := range arr {
				delays = append(delays, a.at.Sub(t0.Add(time.Duration(i)*10*time.Millisecond)))
			}
		})
		return delays
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("two runs with seed 7 differ")
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 give the same delays")
	}
	lost := 0
	for _, d := range a {
		if d < l.Latency {
			t.Fatalf("delay %v < latency %v", d, l.Latency)
		}
		if d >= l.Latency+l.RTO() {
			lost++
		}
	}
	// 500 writes at 10% loss: about 50 lost; the bounds are 8 standard
	// deviations wide, and a lost write also holds back those behind it.
	if lost < 10 || lost > 200 {
		t.Errorf("%d of 500 writes delayed by an RTO, want about 50", lost)
	}
}

func TestLinkBackpressure(t *testing.T) {
	const chunk = 64 << 10
	fill := func(t *testing.T, ls network.Stream) {
		t.Helper()
		t0 := time.Now()
		for range linkMinQueue / chunk {
			mustWrite(t, ls, make([]byte, chunk))
		}
		if d := time.Since(t0); d != 0 {
			t.Fatalf("writes of 1 MiB took %v, want 0", d)
		}
	}
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sink := &sinkStream{}
			ls := Link{Latency: time.Second}.Wrap(sink)
			fill(t, ls)
			t0 := time.Now()
			ls.SetWriteDeadline(t0.Add(100 * time.Millisecond))
			if _, err := ls.Write(make([]byte, chunk)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Write on a full queue = %v, want os.ErrDeadlineExceeded", err)
			}
			if d := time.Since(t0); d != 100*time.Millisecond {
				t.Errorf("Write failed after %v, want at the deadline, 100ms", d)
			}
			if _, err := ls.Write([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Write past the deadline = %v, want os.ErrDeadlineExceeded", err)
			}
			ls.SetDeadline(time.Time{})
			mustWrite(t, ls, make([]byte, chunk))
			if d := time.Since(t0); d != time.Second {
				t.Errorf("Write returned after %v, want 1s, when the queue drains", d)
			}
			if err := ls.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			if data, _ := sink.snapshot(); len(data) != linkMinQueue+chunk {
				t.Errorf("delivered %d bytes, want %d", len(data), linkMinQueue+chunk)
			}
		})
	})
	t.Run("deadline moved while blocked", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ls := Link{Latency: time.Second}.Wrap(&sinkStream{})
			fill(t, ls)
			t0 := time.Now()
			errc := make(chan error)
			go func() {
				_, err := ls.Write([]byte{1})
				errc <- err
			}()
			time.Sleep(50 * time.Millisecond)
			ls.SetWriteDeadline(time.Now())
			if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(t0) != 50*time.Millisecond {
				t.Errorf("blocked Write = %v after %v, want os.ErrDeadlineExceeded after 50ms", err, time.Since(t0))
			}
			ls.Reset()
		})
	})
	t.Run("reset unblocks", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sink := &sinkStream{}
			ls := Link{Latency: time.Second}.Wrap(sink)
			fill(t, ls)
			t0 := time.Now()
			errc := make(chan error)
			go func() {
				_, err := ls.Write([]byte{1})
				errc <- err
			}()
			synctest.Wait()
			if err := ls.Reset(); err != nil {
				t.Errorf("Reset() = %v", err)
			}
			if err := <-errc; !errors.Is(err, network.ErrReset) {
				t.Errorf("blocked Write after Reset = %v, want network.ErrReset", err)
			}
			if d := time.Since(t0); d != 0 {
				t.Errorf("Reset took %v, want 0", d)
			}
			if data, _ := sink.snapshot(); len(data) != 0 || !sink.reset || !exited(ls) {
				t.Errorf("after Reset: %d bytes delivered, sink reset %v, goroutine exited %v; want 0, true, true", len(data), sink.reset, exited(ls))
			}
		})
	})
}

func TestLinkCloseFlushes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(network.Stream) error
		check func(*sinkStream) bool
	}{
		{"Close", network.Stream.Close, func(s *sinkStream) bool { return s.closed && !s.closedWrite }},
		{"CloseWrite", network.Stream.CloseWrite, func(s *sinkStream) bool { return s.closedWrite && !s.closed }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sink := &sinkStream{}
				ls := Link{Latency: 50 * time.Millisecond, Bandwidth: 10e6, Jitter: 5 * time.Millisecond}.Wrap(sink)
				var want []byte
				for i := range 100 {
					p := bytes.Repeat([]byte{byte(i)}, 1000)
					want = append(want, p...)
					mustWrite(t, ls, p)
				}
				if err := tt.close(ls); err != nil {
					t.Fatalf("%s() = %v", tt.name, err)
				}
				closed := time.Now()
				data, arr := sink.snapshot()
				if !bytes.Equal(data, want) {
					t.Fatalf("delivered %d bytes, want all %d", len(data), len(want))
				}
				last := arr[len(arr)-1].at
				if !tt.check(sink) || sink.closedAt.Before(last) || closed.Before(last) {
					t.Errorf("sink closed at %v, %s returned at %v, last delivery at %v", sink.closedAt, tt.name, closed, last)
				}
				if !exited(ls) {
					t.Errorf("delivery goroutine still running after %s", tt.name)
				}
				if _, err := ls.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Write after %s = %v, want net.ErrClosed", tt.name, err)
				}
				if err := ls.Close(); err != nil {
					t.Errorf("second Close() = %v", err)
				}
			})
		})
	}
}

func TestLinkCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &sinkStream{}
		ls := Link{Latency: time.Second}.Wrap(sink)
		mustWrite(t, ls, []byte("never"))
		t0 := time.Now()
		ls.SetWriteDeadline(t0.Add(100 * time.Millisecond))
		if err := ls.Close(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Close() = %v, want os.ErrDeadlineExceeded", err)
		}
		if d := time.Since(t0); d != 100*time.Millisecond {
			t.Errorf("Close returned after %v, want 100ms", d)
		}
		if data, _ := sink.snapshot(); len(data) != 0 || !sink.reset || !exited(ls) {
			t.Errorf("after Close past deadline: %q delivered, reset %v, exited %v; want nothing, true, true", data, sink.reset, exited(ls))
		}
	})
}

func TestLinkResetDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &sinkStream{}
		ls := Link{Latency: time.Second, Bandwidth: 1e6}.Wrap(sink)
		for range 10 {
			mustWrite(t, ls, make([]byte, 1000))
		}
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		if err := ls.ResetWithError(42); err != nil {
			t.Errorf("ResetWithError(42) = %v", err)
		}
		if d := time.Since(t0); d != 0 {
			t.Errorf("Reset took %v, want 0", d)
		}
		if data, _ := sink.snapshot(); len(data) != 0 || !sink.reset || sink.resetCode != 42 || !exited(ls) {
			t.Errorf("after Reset: %d bytes delivered, reset %v code %d, exited %v; want 0, true, 42, true", len(data), sink.reset, sink.resetCode, exited(ls))
		}
		if _, err := ls.Write([]byte{1}); !errors.Is(err, network.ErrReset) {
			t.Errorf("Write after Reset = %v, want network.ErrReset", err)
		}
		time.Sleep(2 * time.Second)
		if data, _ := sink.snapshot(); len(data) != 0 {
			t.Errorf("%d bytes delivered after Reset", len(data))
		}
	})
}

func TestLinkResetBeforeWrite(t *testing.T) {
	sink := &sinkStream{}
	ls := Link{Latency: time.Second}.Wrap(sink)
	if err := ls.Reset(); err != nil || !sink.reset {
		t.Errorf("Reset() = %v, sink reset %v; want nil, true", err, sink.reset)
	}
}

func TestLinkWriteError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &sinkStream{fail: true}
		ls := Link{Latency: 10 * time.Millisecond}.Wrap(sink)
		mustWrite(t, ls, []byte("a"))
		mustWrite(t, ls, []byte("b"))
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if _, err := ls.Write([]byte("c")); !errors.Is(err, errSink) {
			t.Errorf("Write after a failed delivery = %v, want errSink", err)
		}
		if err := ls.Close(); !errors.Is(err, errSink) {
			t.Errorf("Close after a failed delivery = %v, want errSink", err)
		}
		if !sink.closed || !exited(ls) {
			t.Errorf("sink closed %v, goroutine exited %v; want both", sink.closed, exited(ls))
		}
	})
}

func TestLinkSetDeadlinePassesReadDeadline(t *testing.T) {
	sink := &sinkStream{}
	ls := Link{Latency: time.Millisecond}.Wrap(sink)
	dl := time.Now().Add(time.Hour)
	if err := ls.SetDeadline(dl); err != nil || !sink.readDeadline.Equal(dl) {
		t.Errorf("SetDeadline: err %v, read deadline %v; want nil, %v", err, sink.readDeadline, dl)
	}
	ls.Reset()
}

// newLoopbackHost starts a libp2p host that listens on 127.0.0.1 only.
func newLoopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.ForceReachabilityPrivate(),
	)
	if err != nil {
		t.Fatalf("libp2p.New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLinkLibp2p runs a wrapped stream between two hosts on loopback in
// real time; only lower bounds are tight.
func TestLinkLibp2p(t *testing.T) {
	const proto = "/strata/test/link/1.0.0"
	a, b := newLoopbackHost(t), newLoopbackHost(t)
	b.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, s)
		if err != nil {
			s.Reset()
			return
		}
		s.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	s, err := a.NewStream(ctx, b.ID(), proto)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	l := Link{Latency: 50 * time.Millisecond, Bandwidth: 80e6, Jitter: time.Millisecond, Seed: 1}
	ls := l.Wrap(s)
	if ls.Protocol() != proto || ls.Conn().RemotePeer() != b.ID() {
		t.Errorf("wrapped stream: protocol %q, peer %v; want %q, %v", ls.Protocol(), ls.Conn().RemotePeer(), proto, b.ID())
	}
	ls.SetDeadline(time.Now().Add(30 * time.Second))
	const size = 1 << 20
	start := time.Now()
	for p := range slices.Chunk(make([]byte, size), 16<<10) {
		mustWrite(t, ls, p)
	}
	if err := ls.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite() = %v", err)
	}
	reply, err := io.ReadAll(ls)
	elapsed := time.Since(start)
	if err != nil || len(reply) != 8 || binary.BigEndian.Uint64(reply) != size {
		t.Fatalf("reply %x, %v; want the byte count %d", reply, err, size)
	}
	// Transmission of 1 MiB at 80 Mbit/s (104.86 ms) plus the latency.
	if lo, hi := 104857600*time.Nanosecond+l.Latency, 10*time.Second; elapsed < lo || elapsed > hi {
		t.Errorf("1 MiB over %v took %v, want in [%v, %v]", l, elapsed, lo, hi)
	}
	if err := ls.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if !exited(ls) {
		t.Errorf("delivery goroutine still running after Close")
	}
	t.Logf("1 MiB over %v: %v", l, elapsed)
}

// discardCloser counts what reaches it.
type discardCloser struct{ n int64 }

func (d *discardCloser) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discardCloser) Close() error                { return nil }

// BenchmarkLinkWrite16KiB measures the cost of the emulation itself: a
// 1 ns link in front of a writer that discards.
func BenchmarkLinkWrite16KiB(b *testing.B) {
	const size = 16 << 10
	d := &discardCloser{}
	w := Link{Latency: time.Nanosecond}.WrapWriter(d)
	p := make([]byte, size)
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := w.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if d.n != int64(b.N)*size {
		b.Fatalf("delivered %d bytes, want %d", d.n, int64(b.N)*size)
	}
}
