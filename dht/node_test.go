package dht

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/stratanet/strata/weights"
)

// loopback keeps every test host on 127.0.0.1.
func loopback() Option {
	return WithListenAddrs("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
}

// newNode starts a node on loopback in a fresh data directory.
func newNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	return newNodeIn(t, t.TempDir(), opts...)
}

func newNodeIn(t *testing.T, dir string, opts ...Option) *Node {
	t.Helper()
	base := []Option{WithDataDir(dir), loopback(), WithForcePrivate(), WithBootstrapWait(10 * time.Second)}
	n, err := New(t.Context(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	for _, a := range n.Host().Addrs() {
		if ip, err := a.ValueForProtocol(ma.P_IP4); err != nil || ip != "127.0.0.1" {
			t.Fatalf("test host listens on %v, want 127.0.0.1 only", a)
		}
	}
	return n
}

func fakeModel(s string) weights.ModelID {
	var id weights.ModelID
	copy(id[:], s)
	return id
}

// poll calls f until it returns nil or the deadline passes.
func poll(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-tick.C:
		}
	}
}

var cmpAddrs = cmp.Comparer(func(a, b ma.Multiaddr) bool { return a.Equal(b) })

type liveInfo struct {
	calls    atomic.Int64
	sessions atomic.Int64
	info     Info
}

func (l *liveInfo) get() Info {
	l.calls.Add(1)
	in := l.info
	in.ActiveSessions = l.sessions.Load()
	return in
}

func TestSwarm(t *testing.T) {
	model := fakeModel("strata test model")
	spans := []Span{{0, 4}, {2, 6}, {4, 8}, {6, 10}, {0, 10}}
	const blocks = 10

	lives := make([]*liveInfo, len(spans))
	servers := make([]*Node, len(spans))
	for i, sp := range spans {
		lives[i] = &liveInfo{info: Info{
			Model: model, Span: sp, Throughput: 100 + float64(i), FreeKVBytes: int64(i) << 20,
			Profile: "cpu-v1", Version: "0.0.0-test",
		}}
		opts := []Option{WithServer(), WithInfoFunc(lives[i].get)}
		if i > 0 {
			opts = append(opts, WithBootstrapPeers(servers[0].AddrInfo()))
		}
		servers[i] = newNode(t, opts...)
		lives[i].info.Addrs = servers[i].Host().Addrs()
	}
	for i, s := range servers {
		if _, err := s.Announce(t.Context(), model, spans[i]); err != nil {
			t.Fatalf("server %d: Announce: %v", i, err)
		}
	}
	client := newNode(t, WithBootstrapPeers(servers[0].AddrInfo()), WithInfoCache(16, 300*time.Millisecond))

	for b := range blocks {
		var want []peer.ID
		for i, sp := range spans {
			if sp.Start <= b && b < sp.End {
				want = append(want, servers[i].ID())
			}
		}
		slices.Sort(want)
		poll(t, 10*time.Second, func() error {
			ais, err := client.FindProviders(t.Context(), model, b)
			if err != nil {
				return err
			}
			var got []peer.ID
			for _, ai := range ais {
				got = append(got, ai.ID)
			}
			slices.Sort(got)
			for _, id := range got {
				if !slices.Contains(want, id) {
					t.Fatalf("FindProviders(block %d) = %v: %v serves no such block", b, got, id)
				}
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("FindProviders(block %d) = %v, want %v", b, got, want)
			}
			return nil
		})
	}
	if ais, err := client.FindProviders(t.Context(), fakeModel("other model"), 0); err != nil || len(ais) != 0 {
		t.Errorf("FindProviders(other model) = %v, %v; want none", ais, err)
	}

	// Info: live values, cached, refetched after the TTL.
	for i, s := range servers {
		lives[i].sessions.Store(int64(i))
		got, err := client.Info(t.Context(), s.ID())
		if err != nil {
			t.Fatalf("Info(server %d): %v", i, err)
		}
		want := lives[i].info
		want.ActiveSessions = int64(i)
		if d := cmp.Diff(want, got, cmpAddrs); d != "" {
			t.Errorf("Info(server %d) (-want +got):\n%s", i, d)
		}
	}
	live := lives[0]
	calls := live.calls.Load()
	live.sessions.Store(7)
	got, err := client.Info(t.Context(), servers[0].ID())
	if err != nil {
		t.Fatal(err)
	}
	if n := live.calls.Load(); n != calls || got.ActiveSessions != 0 {
		t.Errorf("second Info: %d server calls (want %d), sessions %d (want cached 0)", n, calls, got.ActiveSessions)
	}
	poll(t, 5*time.Second, func() error {
		got, err := client.Info(t.Context(), servers[0].ID())
		if err != nil {
			return err
		}
		if got.ActiveSessions != 7 {
			return fmt.Errorf("Info after TTL: sessions %d, want 7", got.ActiveSessions)
		}
		return nil
	})
	if n := live.calls.Load(); n != calls+1 {
		t.Errorf("after TTL: %d server calls, want %d", n, calls+1)
	}
}

func TestIdentityPersists(t *testing.T) {
	dir := t.TempDir()
	a := newNodeIn(t, dir)
	id := a.ID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("key file mode %v, want 0600", m)
	}
	b := newNodeIn(t, dir)
	if b.ID() != id {
		t.Errorf("restarted ID = %s, want %s", b.ID(), id)
	}
}

func TestIdentityBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"garbage", []byte("not a key"), 0o600},
		{"empty", nil, 0o600},
		{"world readable", nil, 0o644},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, IdentityFile)
			data := tc.data
			if data == nil && tc.mode != 0o600 { // a valid key, bad mode
				if _, err := LoadOrCreateIdentity(dir); err != nil {
					t.Fatal(err)
				}
				var err error
				if data, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(path, data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := New(t.Context(), WithDataDir(dir), loopback(), WithForcePrivate())
			if !errors.Is(err, ErrIdentity) {
				t.Fatalf("New with %s key file: err = %v, want ErrIdentity", tc.name, err)
			}
			after, _ := os.ReadFile(path)
			if !slices.Equal(after, data) {
				t.Errorf("key file was changed")
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"no data dir", nil},
		{"refresh above TTL/2", []Option{WithDataDir(t.TempDir()), WithRefreshInterval(time.Hour), WithRecordTTL(time.Hour)}},
		{"bad listen", []Option{WithDataDir(t.TempDir()), WithListenAddrs("nope")}},
		{"bad bootstrap", []Option{WithDataDir(t.TempDir()), WithBootstrap("/ip4/127.0.0.1/tcp/1")}},
		{"zero cache", []Option{WithDataDir(t.TempDir()), WithInfoCache(0, time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(t.Context(), tc.opts...); !errors.Is(err, ErrConfig) {
				t.Errorf("New = %v, want ErrConfig", err)
			}
		})
	}
}

// fakeClock fires timers only when told to.
type fakeClock struct {
	mu      sync.Mutex
	waiters []chan time.Time
	added   chan struct{}
}

func newFakeClock() *fakeClock { return &fakeClock{added: make(chan struct{}, 100)} }

func (c *fakeClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.waiters = append(c.waiters, ch)
	c.mu.Unlock()
	c.added <- struct{}{}
	return ch
}

func (c *fakeClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.waiters {
		ch <- time.Now()
	}
	c.waiters = nil
}

func TestCloseStopsRefresh(t *testing.T) {
	model := fakeModel("refresh model")
	clk := newFakeClock()
	a := newNode(t, WithServer(), WithClock(clk))
	newNode(t, WithServer(), WithBootstrapPeers(a.AddrInfo())) // a place to put records
	ann, err := a.Announce(t.Context(), model, Span{0, 3})
	if err != nil {
		t.Fatal(err)
	}
	for want := 2; want <= 3; want++ {
		select { // the loop waits for its timer
		case <-clk.added:
		case <-time.After(10 * time.Second):
			t.Fatal("refresh loop never started its timer")
		}
		clk.fire()
		poll(t, 10*time.Second, func() error {
			if n, err := ann.Refreshes(); n != want || err != nil {
				return fmt.Errorf("Refreshes() = %d, %v; want %d, nil", n, err, want)
			}
			return nil
		})
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ann.Done():
	default:
		t.Fatal("refresh loop still running after Close")
	}
	clk.fire()
	if n, _ := ann.Refreshes(); n != 3 {
		t.Errorf("after Close: Refreshes() = %d, want 3", n)
	}
	if _, err := a.Announce(t.Context(), model, Span{0, 1}); err == nil {
		t.Error("Announce after Close succeeded")
	}
}

// TestRecordsExpire shows what Close means for remote peers: the record stays
// alive while refreshed past its TTL and expires there once the announcer
// stops; nothing deletes it.
func TestRecordsExpire(t *testing.T) {
	model := fakeModel("expiry model")
	ttl := []Option{WithServer(), WithRecordTTL(time.Second), WithRefreshInterval(200 * time.Millisecond)}
	a := newNode(t, ttl...)
	b := newNode(t, append(ttl, WithBootstrapPeers(a.AddrInfo()))...)
	ann, err := a.Announce(t.Context(), model, Span{5, 6})
	if err != nil {
		t.Fatal(err)
	}
	found := func() (bool, error) {
		ais, err := b.FindProviders(t.Context(), model, 5)
		return slices.ContainsFunc(ais, func(ai peer.AddrInfo) bool { return ai.ID == a.ID() }), err
	}
	start := time.Now()
	poll(t, 20*time.Second, func() error { // outlive the TTL on refreshes
		if n, _ := ann.Refreshes(); n < 3 || time.Since(start) < 1500*time.Millisecond {
			return fmt.Errorf("waiting for refreshes past the TTL (%d so far)", n)
		}
		return nil
	})
	if ok, err := found(); !ok || err != nil {
		t.Fatalf("while refreshed: found = %v, %v; want true", ok, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, func() error {
		if ok, err := found(); ok || err != nil {
			return fmt.Errorf("after Close: found = %v, %v; want false once expired", ok, err)
		}
		return nil
	})
}

// TestLoneAnnounce: the first node of a swarm has no peers yet and still announces.

func TestLoneAnnounce(t *testing.T) {
	n := newNode(t, WithServer())
	if _, err := n.Announce(t.Context(), fakeModel("lone"), Span{0, 2}); err != nil {
		t.Fatalf("Announce on a lone node: %v", err)
	}
	ais, err := n.FindProviders(t.Context(), fakeModel("lone"), 1)
	if err != nil || len(ais) != 1 || ais[0].ID != n.ID() {
		t.Fatalf("FindProviders on a lone node = %v, %v; want itself", ais, err)
	}
}
