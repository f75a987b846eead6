package dht

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/stratanet/strata/weights"
)

// MaxBlocks bounds block indices and span ends accepted from anyone.
const MaxBlocks = 1 << 16

// Span is a range of blocks [Start, End) of a model. It mirrors shard.Span,
// which networking packages do not import.
type Span struct{ Start, End int }

// Len is the number of blocks in the span.
func (s Span) Len() int { return s.End - s.Start }

// String formats the span as "start:end".
func (s Span) String() string { return fmt.Sprintf("%d:%d", s.Start, s.End) }

// ErrSpan is returned for an empty span or one beyond [MaxBlocks].
var ErrSpan = errors.New("dht: invalid span")

// Validate reports whether 0 <= Start < End <= MaxBlocks.
func (s Span) Validate() error {
	if s.Start < 0 || s.End <= s.Start || s.End > MaxBlocks {
		return fmt.Errorf("%w: %v", ErrSpan, s)
	}
	return nil
}

// BlockKey is the provider record key of one block of a model: CIDv1, raw
// codec, SHA2-256 of "strata/v1/" + model id + big-endian uint64 block.
func BlockKey(model weights.ModelID, block int) cid.Cid {
	var buf [len("strata/v1/") + 32 + 8]byte
	b := append(buf[:0], "strata/v1/"...)
	b = append(b, model[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(block))
	sum := sha256.Sum256(b)
	m, err := mh.Encode(sum[:], mh.SHA2_256)
	if err != nil { // only for an unknown code or wrong length
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, m)
}

// provideConcurrency bounds the parallel provides of one announcement.
const provideConcurrency = 8

// Announcement is a span this node announces until Stop.
type Announcement struct {
	node   *Node
	model  weights.ModelID
	span   Span
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	refreshes int
	lastErr   error
}

// Announce provides every block of span for model, waits for the first round
// to finish and keeps refreshing the records every refresh interval until the
// announcement is stopped or the node closes. ctx bounds the first round only.
func (n *Node) Announce(ctx context.Context, model weights.ModelID, span Span) (*Announcement, error) {
	if err := span.Validate(); err != nil {
		return nil, err
	}
	if err := n.provideSpan(ctx, model, span); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	a := &Announcement{node: n, model: model, span: span, cancel: cancel, done: make(chan struct{}), refreshes: 1}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	n.ann[a] = struct{}{}
	n.mu.Unlock()
	go a.loop(lctx)
	return a, nil
}

func (a *Announcement) loop(ctx context.Context) {
	defer close(a.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.node.cfg.Clock.After(a.node.cfg.RefreshInterval):
		}
		rctx, cancel := context.WithTimeout(ctx, a.node.cfg.RefreshInterval)
		err := a.node.provideSpan(rctx, a.model, a.span)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		a.refreshes++
		a.lastErr = err
		a.mu.Unlock()
		if err != nil {
			a.node.cfg.Logger.Warn("dht: refresh failed; retrying next interval",
				"model", a.model.Short(), "span", a.span, "err", err)
		}
	}
}

// Refreshes is the number of provide rounds done so far, the first included,
// and the error of the last one.
func (a *Announcement) Refreshes() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshes, a.lastErr
}

// Done is closed once the refresh loop has ended.
func (a *Announcement) Done() <-chan struct{} { return a.done }

// Stop ends the refresh loop and waits for it. Remote copies of the records
// are not deleted (Kademlia cannot); they expire after the record TTL.
func (a *Announcement) Stop() {
	a.cancel()
	<-a.done
	a.node.mu.Lock()
	delete(a.node.ann, a)
	a.node.mu.Unlock()
}

func (n *Node) provideSpan(ctx context.Context, model weights.ModelID, span Span) error {
	sem := make(chan struct{}, provideConcurrency)
	errs := make([]error, span.Len())
	var wg sync.WaitGroup
	for b := span.Start; b < span.End; b++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := n.kad.Provide(ctx, BlockKey(model, b), true)
			// With an empty routing table (the first node of a swarm) the
			// record is kept locally, where lookups through this node find
			// it; the next refresh also puts it on the peers that joined.
			if errors.Is(err, kb.ErrLookupFailure) {
				err = nil
			}
			if err != nil {
				errs[b-span.Start] = fmt.Errorf("dht: provide block %d of %s: %w", b, model.Short(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// FindProviders returns the peers that announce block of model, as far as the
// DHT knows; records of peers that left can linger until they expire.
func (n *Node) FindProviders(ctx context.Context, model weights.ModelID, block int) ([]peer.AddrInfo, error) {
	if block < 0 || block >= MaxBlocks {
		return nil, fmt.Errorf("%w: block %d", ErrSpan, block)
	}
	var out []peer.AddrInfo
	for ai := range n.kad.FindProvidersAsync(ctx, BlockKey(model, block), 0) {
		out = append(out, ai)
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, nil
}
