package relay

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
)

// Serving is a running server node: its libp2p host and DHT, the session
// server for its shard, and the announcement of its blocks.
type Serving struct {
	Node   *dht.Node
	Server *Server
	ann    *dht.Announcement
}

// Serve starts a node with opts (server mode and the info protocol added),
// a session server for sh and the announcement of sh's blocks under
// cfg.Model.
func Serve(ctx context.Context, sh *shard.Shard, cfg ServerConfig, opts ...dht.Option) (*Serving, error) {
	var srv atomic.Pointer[Server]
	info := func() dht.Info {
		if s := srv.Load(); s != nil {
			return s.Info()
		}
		sp := sh.Span()
		return dht.Info{Span: dht.Span{Start: sp.Start, End: sp.End}, Version: cfg.Version}
	}
	node, err := dht.New(ctx, append(opts, dht.WithServer(), dht.WithInfoFunc(info))...)
	if err != nil {
		return nil, err
	}
	s, err := NewServer(node, sh, cfg)
	if err != nil {
		node.Close()
		return nil, err
	}
	srv.Store(s)
	sp := sh.Span()
	ann, err := node.Announce(ctx, cfg.Model, dht.Span{Start: sp.Start, End: sp.End})
	if err != nil {
		s.Close()
		node.Close()
		return nil, fmt.Errorf("relay: announce: %w", err)
	}
	return &Serving{Node: node, Server: s, ann: ann}, nil
}

// Close stops at once, as a crash would for the sessions: they are
// dropped, and clients replay them elsewhere.
func (sv *Serving) Close() error {
	sv.ann.Stop()
	return errors.Join(sv.Server.Close(), sv.Node.Close())
}

// Leave stops gracefully: announcements are withdrawn, sessions are handed
// to successors (see [Server.Leave]), then the node closes.
func (sv *Serving) Leave(ctx context.Context) (int, error) {
	sv.ann.Stop()
	n, err := sv.Server.Leave(ctx)
	return n, errors.Join(err, sv.Node.Close())
}
