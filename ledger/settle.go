package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/stratanet/strata/weights"
)

// SettleProtocol is the protocol on which a client and a server settle a
// session: the client drafts the work receipt from the receipts it got,
// the server checks the draft against what it computed and signs it, the
// client countersigns it, and each appends it to its own chain, the server
// as work, the client as spend.
const SettleProtocol = protocol.ID("/strata/settle/1.0.0")

// Settlement frames are 4-byte big-endian lengths and msgpack, at most
// maxSettleFrame bytes; the exchange must finish within settleTimeout.
const (
	maxSettleFrame = 64 << 10
	settleTimeout  = 30 * time.Second
)

// ErrSettle is returned when a settlement fails.
var ErrSettle = errors.New("ledger: settlement refused")

// ShapeOf is a model's shape, for counting FLOPs.
func ShapeOf(hp *weights.HParams) Shape {
	return Shape{Layers: hp.Layers, Dim: hp.Dim, FFN: hp.FFN, Heads: hp.Heads, KVHeads: hp.KVHeads,
		HeadDimK: hp.HeadDimK, HeadDimV: hp.HeadDimV}
}

// SessionFacts is what a server computed for one session, as its session
// layer recorded it: what it signs receipts for.
type SessionFacts struct {
	Start, End              int // blocks
	First, Positions, Steps int
	StepsHash               [32]byte
}

// FactsFunc looks up what the server computed for session id of client.
type FactsFunc func(session [16]byte, client peer.ID) (SessionFacts, bool)

// Draft makes the unsigned work receipt of a session: FLOPs counted from
// the shape.
func Draft(session [16]byte, model weights.ModelID, shape Shape, f SessionFacts, agreed, unverified, blamed int,
	server, client peer.ID) (*WorkReceipt, error) {
	flops, err := shape.FLOPs(f.End-f.Start, f.First, f.Positions)
	if err != nil {
		return nil, err
	}
	return &WorkReceipt{Session: session[:], Model: model.String(), Start: f.Start, End: f.End, Shape: shape,
		First: f.First, Positions: f.Positions, FLOPs: flops, Steps: f.Steps, StepsHash: f.StepsHash,
		Agreed: agreed, Unverified: unverified, Blamed: blamed, Server: server.String(), Client: client.String()}, nil
}

// settleMsg is one frame of the exchange.
type settleMsg struct {
	Receipt *WorkReceipt `msgpack:"receipt,omitempty"`
	Error   string       `msgpack:"error,omitempty"`
}

func writeSettle(w io.Writer, m *settleMsg) error {
	b, err := msgpack.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxSettleFrame {
		return fmt.Errorf("ledger: settlement frame of %d bytes", len(b))
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	if err == nil {
		_, err = w.Write(b)
	}
	return err
}

func readSettle(r io.Reader) (*settleMsg, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > maxSettleFrame {
		return nil, fmt.Errorf("ledger: settlement frame of %d bytes (at most %d)", size, maxSettleFrame)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var m settleMsg
	if err := unmarshalStrict(b, &m); err != nil {
		return nil, fmt.Errorf("ledger: settlement frame: %w", err)
	}
	if m.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrSettle, m.Error)
	}
	if m.Receipt == nil {
		return nil, errors.New("ledger: settlement frame without a receipt")
	}
	return &m, nil
}

// SettleServer answers settlements for the sessions a server served.
type SettleServer struct {
	h     host.Host
	l     *Ledger
	model weights.ModelID
	shape Shape
	facts FactsFunc

	mu      sync.Mutex
	settled *lru.Cache[[16]byte, bool]
}

// ServeSettle answers settlements on h for model's sessions, appending
// work records to l.
func ServeSettle(h host.Host, l *Ledger, model weights.ModelID, shape Shape, facts FactsFunc) *SettleServer {
	c, _ := lru.New[[16]byte, bool](1 << 16) // fails only for a size <= 0
	s := &SettleServer{h: h, l: l, model: model, shape: shape, facts: facts, settled: c}
	h.SetStreamHandler(SettleProtocol, s.handle)
	return s
}

// Close stops answering.
func (s *SettleServer) Close() { s.h.RemoveStreamHandler(SettleProtocol) }

func (s *SettleServer) handle(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(settleTimeout))
	client := st.Conn().RemotePeer()
	refuse := func(format string, args ...any) {
		_ = writeSettle(st, &settleMsg{Error: fmt.Sprintf(format, args...)})
	}
	m, err := readSettle(st)
	if err != nil {
		_ = st.Reset()
		return
	}
	w := m.Receipt
	var session [16]byte
	if len(w.Session) != len(session) {
		refuse("session id of %d bytes", len(w.Session))
		return
	}
	copy(session[:], w.Session)
	f, ok := s.facts(session, client)
	if !ok {
		refuse("no session %x of yours was served here", session[:4])
		return
	}
	want, err := Draft(session, s.model, s.shape, f, w.Agreed, w.Unverified, w.Blamed, s.h.ID(), client)
	if err != nil {
		refuse("%v", err)
		return
	}
	if err := sameDraft(w, want); err != nil {
		refuse("the draft does not match what was served: %v", err)
		return
	}
	s.mu.Lock()
	done := s.settled.Contains(session)
	s.mu.Unlock()
	if done {
		refuse("session %x is settled already", session[:4])
		return
	}
	if err := want.SignServer(s.l.key); err != nil {
		refuse("sign: %v", err)
		return
	}
	if err := want.Check(false); err != nil {
		refuse("%v", err)
		return
	}
	if err := writeSettle(st, &settleMsg{Receipt: want}); err != nil {
		return
	}
	m, err = readSettle(st)
	if err != nil {
		return
	}
	got := m.Receipt
	if err := sameDraft(got, want); err != nil || !bytes.Equal(got.ServerSig, want.ServerSig) {
		refuse("the countersigned receipt is not the one signed")
		return
	}
	if err := got.Check(true); err != nil {
		refuse("%v", err)
		return
	}
	payload, err := Marshal(got)
	if err != nil {
		refuse("%v", err)
		return
	}
	s.mu.Lock()
	if s.settled.Contains(session) {
		s.mu.Unlock()
		refuse("session %x is settled already", session[:4])
		return
	}
	s.settled.Add(session, true)
	s.mu.Unlock()
	if _, err := s.l.Append(KindWork, payload); err != nil {
		s.mu.Lock()
		s.settled.Remove(session)
		s.mu.Unlock()
		refuse("record: %v", err)
		return
	}
	_ = writeSettle(st, &settleMsg{Receipt: got})
}

// sameDraft compares two receipts' signed fields.
func sameDraft(a, b *WorkReceipt) error {
	ab, err := a.signingBytes()
	if err != nil {
		return err
	}
	bb, err := b.signingBytes()
	if err != nil {
		return err
	}
	if !bytes.Equal(ab, bb) {
		return fmt.Errorf("%+v != %+v", stripped(a), stripped(b))
	}
	return nil
}

func stripped(w *WorkReceipt) WorkReceipt {
	c := *w
	c.ServerSig, c.ClientSig = nil, nil
	return c
}

// Settle settles draft with its server over h: the server signs it, this
// client (l's owner) countersigns it and appends it to l as spend, and the
// server records it as work. It returns the countersigned receipt.
func Settle(ctx context.Context, h host.Host, l *Ledger, draft *WorkReceipt) (*WorkReceipt, error) {
	server, err := peer.Decode(draft.Server)
	if err != nil {
		return nil, err
	}
	if draft.Client != l.Owner().String() {
		return nil, fmt.Errorf("ledger: the draft's client %s is not this ledger's owner", draft.Client)
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	st, err := h.NewStream(ctx, server, SettleProtocol)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := writeSettle(st, &settleMsg{Receipt: draft}); err != nil {
		_ = st.Reset()
		return nil, err
	}
	m, err := readSettle(st)
	if err != nil {
		_ = st.Reset()
		return nil, err
	}
	w := m.Receipt
	if err := sameDraft(w, draft); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("ledger: the server signed another receipt: %w", err)
	}
	if err := w.Check(false); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("ledger: the server's receipt: %w", err)
	}
	if err := w.SignClient(l.key); err != nil {
		return nil, err
	}
	payload, err := Marshal(w)
	if err != nil {
		return nil, err
	}
	if err := writeSettle(st, &settleMsg{Receipt: w}); err != nil {
		_ = st.Reset()
		return nil, err
	}
	// Countersigned, the receipt is proof of consumption: spent whether
	// or not the server records it.
	if _, err := l.Append(KindSpend, payload); err != nil {
		return nil, err
	}
	if _, err := readSettle(st); err != nil {
		return w, fmt.Errorf("ledger: the server did not confirm its record: %w", err)
	}
	return w, nil
}
