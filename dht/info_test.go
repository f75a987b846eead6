package dht

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vmihailenco/msgpack/v5"
)

func sampleInfo() Info {
	return Info{
		Model: fakeModel("sample"), Span: Span{3, 9}, Throughput: 42.5, FreeKVBytes: 1 << 30,
		ActiveSessions: 2, Profile: "cpu-v1", Version: "0.1.0",
		Addrs:    []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")},
		Counters: Counters{Steps: 1 << 40, Compute: 90 * time.Minute, Hash: time.Second, Sign: 3 * time.Millisecond, BytesSent: 5 << 33},
	}
}

// mp encodes a msgpack map given as alternating keys and values.
func mp(t testing.TB, kv ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	if err := e.EncodeMapLen(len(kv) / 2); err != nil {
		t.Fatal(err)
	}
	for _, v := range kv {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func validKV(model []byte) []any {
	return []any{"model", model, "start", 0, "end", 4, "tps", 1.5, "free_kv", 10, "sessions", 1, "profile", "cpu-v1", "version", "v"}
}

func TestInfoRoundTrip(t *testing.T) {
	in := sampleInfo()
	b, err := EncodeInfo(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, got, cmpAddrs); d != "" {
		t.Errorf("DecodeInfo(EncodeInfo(x)) (-want +got):\n%s", d)
	}
	// Unknown keys from a newer peer are skipped.
	model := make([]byte, 32)
	kv := append(validKV(model), "energy", map[string]any{"state": "battery", "pct": []int{1, 2}})
	if _, err := DecodeInfo(mp(t, kv...)); err != nil {
		t.Errorf("DecodeInfo with an unknown key: %v", err)
	}
	// A server that predates the counters sends none: they read as zero.
	old, err := DecodeInfo(mp(t, validKV(model)...))
	if err != nil || old.Counters != (Counters{}) {
		t.Errorf("DecodeInfo without counters = %+v, %v; want zero counters", old.Counters, err)
	}
	// The counters round-trip through the wire keys.
	kv = append(validKV(model), "steps", 7, "compute_ns", int64(3e9), "hash_ns", 2, "sign_ns", 1, "sent_bytes", uint64(1<<40))
	got, err = DecodeInfo(mp(t, kv...))
	want := Counters{Steps: 7, Compute: 3 * time.Second, Hash: 2, Sign: 1, BytesSent: 1 << 40}
	if err != nil || got.Counters != want {
		t.Errorf("DecodeInfo of counters = %+v, %v; want %+v", got.Counters, err, want)
	}
}

func malformed(t testing.TB) map[string][]byte {
	model := make([]byte, 32)
	with := func(key string, v any) []byte {
		kv := validKV(model)
		for i := 0; i < len(kv); i += 2 {
			if kv[i] == key {
				kv[i+1] = v
			}
		}
		return mp(t, kv...)
	}
	valid := mp(t, validKV(model)...)
	return map[string][]byte{
		"empty":              {},
		"garbage":            []byte("\xc1\xc1\xc1 this is not msgpack"),
		"not a map":          {0xa3, 'a', 'b', 'c'},
		"array":              {0x92, 0x01, 0x02},
		"truncated":          valid[:len(valid)-3],
		"trailing bytes":     append(append([]byte{}, valid...), 0x00),
		"model as string":    with("model", "abc"),
		"short model":        with("model", []byte{1, 2, 3}),
		"start as string":    with("start", "0"),
		"end as float":       with("end", 4.0),
		"tps as string":      with("tps", "fast"),
		"negative tps":       with("tps", -1.0),
		"NaN tps":            with("tps", math.NaN()),
		"negative sessions":  with("sessions", -1),
		"negative free kv":   with("free_kv", int64(-5)),
		"huge uint free kv":  with("free_kv", uint64(math.MaxUint64)),
		"negative start":     with("start", -1),
		"empty span":         with("end", 0),
		"span past max":      with("end", MaxBlocks+1),
		"negative steps":     mp(t, append(validKV(model), "steps", -1)...),
		"compute as float":   mp(t, append(validKV(model), "compute_ns", 1.5)...),
		"negative compute":   mp(t, append(validKV(model), "compute_ns", int64(-1e9))...),
		"huge uint hash":     mp(t, append(validKV(model), "hash_ns", uint64(math.MaxUint64))...),
		"sign as string":     mp(t, append(validKV(model), "sign_ns", "1")...),
		"sent as bool":       mp(t, append(validKV(model), "sent_bytes", true)...),
		"long profile":       with("profile", strings.Repeat("x", MaxInfoString+1)),
		"bad utf8 version":   with("version", "\xff\xfe"),
		"missing end":        mp(t, "model", model, "start", 0),
		"int key":            mp(t, 1, 2),
		"huge bin claim":     {0x81, 0xa5, 'm', 'o', 'd', 'e', 'l', 0xc6, 0xff, 0xff, 0xff, 0xff},
		"huge unknown bin":   {0x81, 0xa1, 'x', 0xc6, 0x7f, 0xff, 0xff, 0xff},
		"huge unknown array": {0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff},
		"huge map":           {0xdf, 0x7f, 0xff, 0xff, 0xff},
		"huge addrs":         {0x81, 0xa5, 'a', 'd', 'd', 'r', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff},
		"bad addr":           mp(t, append(validKV(model), "addrs", [][]byte{{0xff, 0xff}})...),
		"deep unknown":       append([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 100)...),
	}
}

func TestDecodeInfoMalformed(t *testing.T) {
	for name, b := range malformed(t) {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := DecodeInfo(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrInfo) {
				t.Errorf("DecodeInfo(%q) = %v, want ErrInfo", b, err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 { // well under msgpack's own 1 MiB preallocation
				t.Errorf("DecodeInfo(%q) allocated %d bytes", b, n)
			}
		})
	}
}

func TestReadInfoFrame(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, MaxInfoFrame+1)
	if _, err := ReadInfoFrame(bytes.NewReader(big)); !errors.Is(err, ErrInfo) {
		t.Errorf("oversized frame: err = %v, want ErrInfo", err)
	}
	short := append(binary.BigEndian.AppendUint32(nil, 100), 1, 2, 3)
	if _, err := ReadInfoFrame(bytes.NewReader(short)); !errors.Is(err, ErrInfo) {
		t.Errorf("truncated frame: err = %v, want ErrInfo", err)
	}
	var buf bytes.Buffer
	if err := WriteInfoFrame(&buf, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadInfoFrame(&buf); err != nil || string(got) != "abc" {
		t.Errorf("ReadInfoFrame(WriteInfoFrame(abc)) = %q, %v", got, err)
	}
	bad := sampleInfo()
	bad.FreeKVBytes = -1
	if _, err := EncodeInfo(bad); !errors.Is(err, ErrInfo) {
		t.Errorf("EncodeInfo(negative free KV) = %v, want ErrInfo", err)
	}
}

// TestInfoFromBadPeers runs a lying server and a misbehaving client against
// real hosts: the client gets clear errors, caches none of them, and the
// honest server keeps answering.
func TestInfoFromBadPeers(t *testing.T) {
	live := &liveInfo{info: sampleInfo()}
	live.sessions.Store(sampleInfo().ActiveSessions)
	good := newNode(t, WithServer(), WithInfoFunc(live.get), WithStreamTimeout(2*time.Second))
	liar := newNode(t, WithServer())
	var reply atomic.Value // []byte written raw, or nil to stall
	liar.Host().SetStreamHandler(InfoProtocol, func(s network.Stream) {
		b, _ := reply.Load().([]byte)
		if b == nil {
			io.Copy(io.Discard, s) // the client closed its side; wait for its reset
			<-t.Context().Done()
			s.Reset()
			return
		}
		s.Write(b)
		s.Close()
	})
	client := newNode(t, WithBootstrapPeers(good.AddrInfo(), liar.AddrInfo()), WithStreamTimeout(500*time.Millisecond))

	frame := func(payload []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
	}
	cases := map[string][]byte{
		"oversized":       binary.BigEndian.AppendUint32(nil, 1<<30),
		"truncated frame": append(binary.BigEndian.AppendUint32(nil, 100), 1, 2, 3),
		"short header":    {0, 0},
		"nothing":         {},
	}
	for name, payload := range malformed(t) {
		cases[name] = frame(payload)
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			reply.Store(b)
			client.ForgetInfo(liar.ID())
			if _, err := client.Info(t.Context(), liar.ID()); !errors.Is(err, ErrInfo) {
				t.Errorf("Info from a peer sending %s: err = %v, want ErrInfo", name, err)
			}
		})
	}
	t.Run("stall", func(t *testing.T) {
		reply.Store([]byte(nil))
		client.ForgetInfo(liar.ID())
		start := time.Now()
		_, err := client.Info(t.Context(), liar.ID())
		if err == nil {
			t.Fatal("Info from a stalled peer succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stalled Info took %v, want about the 500ms stream timeout", d)
		}
	})

	// A client that floods the honest server and never reads.
	s, err := client.Host().NewStream(t.Context(), good.ID(), InfoProtocol)
	if err != nil {
		t.Fatal(err)
	}
	go func() { s.Write(bytes.Repeat([]byte{0xc1}, 1<<20)) }()
	t.Cleanup(func() { s.Reset() })

	reply.Store(frame(mustEncode(t, sampleInfo())))
	client.ForgetInfo(liar.ID())
	for _, p := range []*Node{good, liar} {
		got, err := client.Info(t.Context(), p.ID())
		if err != nil {
			t.Fatalf("Info(%s) after the bad exchanges: %v", p.ID(), err)
		}
		if d := cmp.Diff(sampleInfo(), got, cmpAddrs); d != "" {
			t.Errorf("Info (-want +got):\n%s", d)
		}
	}
}

func mustEncode(t testing.TB, in Info) []byte {
	t.Helper()
	b, err := EncodeInfo(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecodeInfo(f *testing.F) {
	f.Add(mustEncode(f, sampleInfo()))
	f.Add(mustEncode(f, Info{Span: Span{0, 1}}))
	for _, b := range malformed(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := DecodeInfo(b)
		if err != nil {
			if !errors.Is(err, ErrInfo) {
				t.Fatalf("DecodeInfo error %v is not ErrInfo", err)
			}
			return
		}
		again, err := DecodeInfo(mustEncode(t, in))
		if err != nil {
			t.Fatalf("DecodeInfo(EncodeInfo(%+v)): %v", in, err)
		}
		if d := cmp.Diff(in, again, cmpAddrs); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}

func BenchmarkDecodeInfo(b *testing.B) {
	payload := mustEncode(b, sampleInfo())
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeInfo(payload); err != nil {
			b.Fatal(err)
		}
	}
}
