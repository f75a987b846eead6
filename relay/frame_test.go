package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/weights"
)

func sid(b byte) SessionID {
	var s SessionID
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func sampleFrames() map[string]Frame {
	act, _ := EncodeActivations(F16, make([]float32, 3*64))
	q8, _ := EncodeActivations(Q8_0, make([]float32, 2*32))
	return map[string]Frame{
		"open": &Open{
			SessionID: sid(1), Model: weights.ModelID{1, 2, 3, 31: 9},
			Span: dht.Span{Start: 3, End: 11}, MaxLength: 2048, Encoding: F16,
			NextHops:  []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc", "12D3KooWdef"},
			TimeoutMS: 30_000, Upstream: "12D3KooWupstream",
		},
		"open no hops": &Open{
			SessionID: sid(2), Span: dht.Span{Start: 0, End: dht.MaxBlocks},
			MaxLength: MaxLength, Encoding: Q8_0, TimeoutMS: MaxTimeoutMS,
		},
		"step f16":  &Step{SessionID: sid(3), Seq: 7, Start: 5, Count: 3, Dim: 64, Encoding: F16, Activations: act},
		"step q8_0": &Step{SessionID: sid(3), Seq: 1<<64 - 1, Start: MaxLength - 1, Count: 1, Dim: 64, Encoding: Q8_0, Activations: q8},
		"step f32":  &Step{SessionID: sid(3), Count: 1, Dim: 1, Encoding: F32, Activations: []byte{1, 2, 3, 4}},
		"close":     &Close{SessionID: sid(4)},
		"receipt": &Receipt{
			SessionID: sid(5), Seq: 42, Span: dht.Span{Start: 0, End: 12}, Tokens: 1,
			InputHash: [32]byte{1}, OutputHash: [32]byte{2}, HistoryHash: [32]byte{3},
			PeerID: "12D3KooWxyz", Signature: bytes.Repeat([]byte{0xab}, 64),
		},
		"receipt unsigned": &Receipt{SessionID: sid(6), Span: dht.Span{Start: 1, End: 2}, Tokens: 128},
		"error":            &Error{SessionID: sid(7), Code: CodeWrongModel, Message: "wrong model ✗"},
		"ready":            &Ready{SessionID: sid(8), Len: 17},
		"rollback":         &Rollback{SessionID: sid(8), Len: 3},
		"reroute":          &Reroute{SessionID: sid(9), Upstream: "12D3KooWup", NextHops: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWn"}},
		"route to client":  &Reroute{SessionID: sid(9)},
		"moved":            &Moved{SessionID: sid(10), Peer: "12D3KooWs", Addrs: []string{"/ip4/127.0.0.1/udp/1/quic-v1"}},
		"migrate": &Migrate{
			Open: Open{SessionID: sid(11), Model: weights.ModelID{7}, Span: dht.Span{Start: 2, End: 4}, MaxLength: 64,
				Encoding: F32, NextHops: []string{"/ip4/127.0.0.1/tcp/2/p2p/12D3KooWx"}, TimeoutMS: 1000, Upstream: "12D3KooWu"},
			Owner: "12D3KooWo", Len: 9, NextSeq: 4, History: [32]byte{5, 31: 6}, KVBytes: 1 << 20,
		},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for name, f := range sampleFrames() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, f, 0); err != nil {
				t.Fatalf("WriteFrame() = %v", err)
			}
			got, err := ReadFrame(&buf, 0)
			if err != nil {
				t.Fatalf("ReadFrame() = %v", err)
			}
			if diff := cmp.Diff(f, got); diff != "" {
				t.Errorf("ReadFrame(WriteFrame(f)) mismatch (-want +got):\n%s", diff)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes left", buf.Len())
			}
			if _, err := ReadFrame(&buf, 0); err != io.EOF {
				t.Errorf("ReadFrame(empty) = %v, want io.EOF", err)
			}
		})
	}
}

// payload builds a raw msgpack array for hostile tests.
func payload(t testing.TB, vals ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	if err := e.EncodeArrayLen(len(vals)); err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestDecodeFrameErrors(t *testing.T) {
	s16 := make([]byte, 16)
	h32 := make([]byte, 32)
	good, err := EncodeFrame(sampleFrames()["open"], 0)
	if err != nil {
		t.Fatal(err)
	}
	step := func(start, count, dim, enc int, act []byte) []byte {
		return payload(t, KindStep, s16, 0, start, count, dim, enc, act)
	}
	open := func(start, end, maxLen, enc int, hops []string, timeout int) []byte {
		return payload(t, KindOpen, s16, h32, start, end, maxLen, enc, hops, timeout, "")
	}
	tests := map[string][]byte{
		"empty":               nil,
		"not an array":        {0x81, 0xa1, 'k', 0x01},
		"truncated":           good[:len(good)-1],
		"trailing garbage":    append(bytes.Clone(good), 0xc0),
		"unknown kind":        payload(t, 9, s16),
		"kind zero":           payload(t, 0, s16),
		"negative kind":       payload(t, -1, s16),
		"kind as string":      payload(t, "open", s16),
		"too few elements":    payload(t, KindClose),
		"too many elements":   payload(t, KindClose, s16, 1),
		"short session id":    payload(t, KindClose, make([]byte, 15)),
		"long session id":     payload(t, KindClose, make([]byte, 17)),
		"session id as str":   payload(t, KindClose, strings.Repeat("x", 16)),
		"empty span":          open(3, 3, 10, 2, nil, 1),
		"reversed span":       open(4, 3, 10, 2, nil, 1),
		"span past max":       open(0, dht.MaxBlocks+1, 10, 2, nil, 1),
		"negative start":      open(-1, 3, 10, 2, nil, 1),
		"max length 0":        open(0, 3, 0, 2, nil, 1),
		"max length too big":  open(0, 3, MaxLength+1, 2, nil, 1),
		"encoding 0":          open(0, 3, 10, 0, nil, 1),
		"encoding 4":          open(0, 3, 10, 4, nil, 1),
		"timeout 0":           open(0, 3, 10, 2, nil, 0),
		"timeout too long":    open(0, 3, 10, 2, nil, MaxTimeoutMS+1),
		"too many hops":       open(0, 3, 10, 2, make([]string, MaxNextHops+1), 1),
		"empty hop":           open(0, 3, 10, 2, []string{""}, 1),
		"long hop":            open(0, 3, 10, 2, []string{strings.Repeat("a", MaxHopLen+1)}, 1),
		"hop not utf8":        open(0, 3, 10, 2, []string{"\xff"}, 1),
		"hops not array":      payload(t, KindOpen, s16, h32, 0, 3, 10, 2, "x", 1, ""),
		"ready beyond max":    payload(t, KindReady, s16, MaxLength+1),
		"moved no peer":       payload(t, KindMoved, s16, "", []string{}),
		"migrate no owner":    payload(t, KindMigrate, s16, h32, 0, 3, 10, 2, []string{}, 1, "", "", 0, 0, h32, 0),
		"migrate len > max":   payload(t, KindMigrate, s16, h32, 0, 3, 10, 2, []string{}, 1, "", "o", 11, 0, h32, 0),
		"migrate kv too big":  payload(t, KindMigrate, s16, h32, 0, 3, 10, 2, []string{}, 1, "", "o", 1, 0, h32, uint64(MaxKVBytes)+1),
		"route long upstream": payload(t, KindReroute, s16, strings.Repeat("u", MaxPeerIDLen+1), []string{}),
		"count 0":             step(0, 0, 4, 1, nil),
		"positions past max":  step(MaxLength, 1, 4, 1, make([]byte, 16)),
		"dim 0":               step(0, 1, 0, 1, nil),
		"dim too big":         step(0, 1, MaxDim+1, 1, nil),
		"short activations":   step(0, 2, 4, 1, make([]byte, 31)),
		"long activations":    step(0, 2, 4, 2, make([]byte, 17)),
		"q8_0 odd dim":        step(0, 1, 33, 3, make([]byte, 34)),
		"activations as str":  payload(t, KindStep, s16, 0, 0, 1, 1, 1, "abcd"),
		"float seq":           payload(t, KindStep, s16, 1.5, 0, 1, 1, 1, []byte{1, 2, 3, 4}),
		"tokens 0":            payload(t, KindReceipt, s16, 0, 0, 1, 0, h32, h32, h32, "p", []byte{}),
		"short hash":          payload(t, KindReceipt, s16, 0, 0, 1, 1, h32[:31], h32, h32, "p", []byte{}),
		"long peer id":        payload(t, KindReceipt, s16, 0, 0, 1, 1, h32, h32, h32, strings.Repeat("p", MaxPeerIDLen+1), []byte{}),
		"long signature":      payload(t, KindReceipt, s16, 0, 0, 1, 1, h32, h32, h32, "p", make([]byte, MaxSignatureLen+1)),
		"error code 0":        payload(t, KindError, s16, 0, "m"),
		"error code too big":  payload(t, KindError, s16, 1<<16, "m"),
		"long message":        payload(t, KindError, s16, 1, strings.Repeat("m", MaxMessageLen+1)),
		"bin length lies":     {0x92, 0x03, 0xc6, 0x7f, 0xff, 0xff, 0xff},
		"array length lies":   {0xdd, 0x7f, 0xff, 0xff, 0xff, 0x03},
		"oversized control":   payload(t, KindError, s16, 1, strings.Repeat("m", MaxControlFrame)),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := DecodeFrame(b, 0)
			if !errors.Is(err, ErrFrame) {
				t.Errorf("DecodeFrame() = %+v, %v, want ErrFrame", f, err)
			}
		})
	}
}

func TestEncodeFrameRejects(t *testing.T) {
	tests := map[string]Frame{
		"nil":        nil,
		"open":       &Open{Span: dht.Span{Start: 1, End: 1}, MaxLength: 1, Encoding: F16, TimeoutMS: 1},
		"step":       &Step{Count: 1, Dim: 2, Encoding: F32, Activations: make([]byte, 7)},
		"receipt":    &Receipt{Span: dht.Span{Start: 0, End: 1}, Tokens: 0},
		"error":      &Error{Code: 1, Message: "\xff"},
		"step > cap": &Step{Count: 1, Dim: 1024, Encoding: F32, Activations: make([]byte, 4096)},
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := EncodeFrame(f, 1024); !errors.Is(err, ErrFrame) {
				t.Errorf("EncodeFrame() = %v, want ErrFrame", err)
			}
		})
	}
}

func TestStepCap(t *testing.T) {
	s := &Step{Count: 4, Dim: 256, Encoding: F32, Activations: make([]byte, 4096)}
	b, err := EncodeFrame(s, 4096)
	if err != nil {
		t.Fatalf("EncodeFrame(cap 4096) = %v", err)
	}
	if _, err := DecodeFrame(b, 4096); err != nil {
		t.Errorf("DecodeFrame(cap 4096) = %v", err)
	}
	if _, err := DecodeFrame(b, 4095); !errors.Is(err, ErrFrame) {
		t.Errorf("DecodeFrame(cap 4095) = %v, want ErrFrame", err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, s, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFrame(&buf, 1024); !errors.Is(err, ErrFrame) {
		t.Errorf("ReadFrame(cap 1024) = %v, want ErrFrame", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	hdr := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	tests := map[string][]byte{
		"short header":      {0, 0},
		"huge length":       hdr(0xffffffff),
		"over cap":          hdr(DefaultMaxActivationBytes + StepOverhead + 1),
		"truncated payload": hdr(10, 0x92, 0x03),
		"empty payload":     hdr(0),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if f, err := ReadFrame(bytes.NewReader(b), 0); !errors.Is(err, ErrFrame) {
				t.Errorf("ReadFrame() = %+v, %v, want ErrFrame", f, err)
			}
		})
	}
}

func TestSigningBytes(t *testing.T) {
	r := sampleFrames()["receipt"].(*Receipt)
	got := r.SigningBytes()
	if want := 18 + 16 + 8 + 12 + 96 + 2 + len(r.PeerID); len(got) != want {
		t.Fatalf("len(SigningBytes()) = %d, want %d", len(got), want)
	}
	if !bytes.HasPrefix(got, []byte("strata/receipt/v1\x00")) {
		t.Errorf("SigningBytes() = %q..., want the domain prefix", got[:18])
	}
	if binary.BigEndian.Uint64(got[34:]) != r.Seq {
		t.Errorf("seq at 34 = %d, want %d", binary.BigEndian.Uint64(got[34:]), r.Seq)
	}
	signed := *r
	signed.Signature = []byte("other")
	if !bytes.Equal(signed.SigningBytes(), got) {
		t.Error("SigningBytes depends on Signature")
	}
	changed := *r
	changed.OutputHash[31] ^= 1
	if bytes.Equal(changed.SigningBytes(), got) {
		t.Error("SigningBytes does not cover OutputHash")
	}
}

// allocBytes returns the bytes f allocates, averaged over runs.
func allocBytes(f func()) uint64 {
	const runs = 20
	f()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&b)
	return (b.TotalAlloc - a.TotalAlloc) / runs
}

func TestDecodeFrameAllocBound(t *testing.T) {
	const size = 64 << 10
	hostile := map[string][]byte{
		"huge bin claims": bytes.Repeat([]byte{0xc6, 0x7f, 0xff, 0xff, 0xff}, size/5),
		"huge array":      append([]byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01}, make([]byte, size-6)...),
		"nested arrays":   bytes.Repeat([]byte{0xdd, 0x00, 0x01, 0x00, 0x00}, size/5),
		"open hop claims": append(payload(t, KindOpen, make([]byte, 16), make([]byte, 32), 0, 1, 1, 2)[:],
			append([]byte{0xdc, 0x00, 0x10}, bytes.Repeat([]byte{0xdb, 0x7f, 0xff, 0xff, 0xff}, (size-80)/5)...)...),
		"step claims cap": append(payload(t, KindStep, make([]byte, 16), 0, 0, 1, 2048, 1)[:], 0xc6, 0x7f, 0xff, 0xff, 0xff),
	}
	// The open and step prefixes above are built with 7 elements and end in
	// a hostile 8th: declare 10 for open (its hops are the 8th) and 8 for step.
	hostile["open hop claims"][0] = 0x9a
	hostile["step claims cap"][0] = 0x98
	for name, b := range hostile {
		t.Run(name, func(t *testing.T) {
			if len(b) > size+64 {
				t.Fatalf("test frame of %d bytes", len(b))
			}
			_, err := DecodeFrame(b, 0)
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("DecodeFrame() = %v, want ErrFrame", err)
			}
			t.Logf("DecodeFrame() = %v", err)
			if got := allocBytes(func() { _, _ = DecodeFrame(b, 0) }); got > 8<<10 {
				t.Errorf("DecodeFrame(hostile %d bytes) allocates %d bytes, want <= 8 KiB", len(b), got)
			}
		})
	}
	t.Run("valid step", func(t *testing.T) {
		b, err := EncodeFrame(&Step{Count: 128, Dim: 2048, Encoding: F16, Activations: make([]byte, 2*128*2048)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := allocBytes(func() { _, _ = DecodeFrame(b, 0) }); got > 4<<10 {
			t.Errorf("DecodeFrame(step of %d bytes) allocates %d bytes, want <= 4 KiB (activations alias the frame)", len(b), got)
		}
	})
}
