package dht

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// ProtocolPrefix is the private Kademlia protocol prefix: Strata nodes never
// talk to the public IPFS DHT.
const ProtocolPrefix protocol.ID = "/strata"

// ErrClosed is returned by methods of a closed [Node].
var ErrClosed = errors.New("dht: node closed")

// ErrBootstrap is returned by [New] when no bootstrap peer could be reached.
var ErrBootstrap = errors.New("dht: bootstrap failed")

// Node is one Strata peer: a libp2p host, its Kademlia DHT and the info
// protocol. It is safe for concurrent use.
type Node struct {
	cfg   Config
	host  host.Host
	kad   *kaddht.IpfsDHT
	cache *expirable.LRU[peer.ID, Info]

	mu     sync.Mutex
	closed bool
	ann    map[*Announcement]struct{}
}

// New starts a node: it loads or creates the identity, listens, starts the
// DHT and, when bootstrap peers are given, connects to them and waits (up to
// the bootstrap wait) until the routing table holds a peer.
func New(ctx context.Context, opts ...Option) (*Node, error) {
	var cfg Config
	for i, opt := range append([]Option{Defaults}, opts...) {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("%w: option %d: %w", ErrConfig, i, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	hopts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(cfg.ListenAddrs...),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}
	if cfg.ForcePrivate {
		hopts = append(hopts, libp2p.ForceReachabilityPrivate())
	}
	h, err := libp2p.New(hopts...)
	if err != nil {
		return nil, fmt.Errorf("dht: start host: %w", err)
	}
	mode := kaddht.ModeClient
	if cfg.Server {
		mode = kaddht.ModeServer
	}
	kad, err := kaddht.New(h,
		kaddht.ProtocolPrefix(ProtocolPrefix),
		kaddht.Mode(mode),
		kaddht.DisableValues(),
		// Never nil: a nil list would make nothing of it, but an explicit
		// function documents that only the configured peers are used.
		kaddht.BootstrapPeersFunc(func() []peer.AddrInfo { return cfg.Bootstrap }),
		kaddht.ProviderManagerOpts(records.ProvideValidity(cfg.RecordTTL)),
	)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("dht: start kademlia: %w", err)
	}
	n := &Node{
		cfg:   cfg,
		host:  h,
		kad:   kad,
		cache: expirable.NewLRU[peer.ID, Info](cfg.InfoCacheSize, nil, cfg.InfoCacheTTL),
		ann:   make(map[*Announcement]struct{}),
	}
	if cfg.InfoFunc != nil {
		h.SetStreamHandler(InfoProtocol, n.handleInfo)
	}
	if err := n.bootstrap(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) bootstrap(ctx context.Context) error {
	if len(n.cfg.Bootstrap) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.BootstrapWait)
	defer cancel()
	var errs []error
	for _, ai := range n.cfg.Bootstrap {
		if err := n.host.Connect(ctx, ai); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ai.ID, err))
		}
	}
	if len(errs) == len(n.cfg.Bootstrap) {
		return fmt.Errorf("%w: %w", ErrBootstrap, errors.Join(errs...))
	}
	for _, err := range errs {
		n.cfg.Logger.Warn("dht: bootstrap peer unreachable", "err", err)
	}
	if err := n.kad.Bootstrap(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrBootstrap, err)
	}
	// Identify runs after the connection is up; the peer enters the routing
	// table once it is known to speak our DHT protocol.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n.kad.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no peer in the routing table: %w", ErrBootstrap, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// ID is the node's peer id.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host is the node's libp2p host, for other protocols (relay/).
func (n *Node) Host() host.Host { return n.host }

// Addrs returns the node's full multiaddrs (ending in /p2p/ID), for others to
// bootstrap from.
func (n *Node) Addrs() []ma.Multiaddr {
	ais, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	if err != nil { // only for an invalid peer id, which a host never has
		panic(err)
	}
	return ais
}

// AddrInfo returns the node's id and listen addresses.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
}

// RoutingTableSize is the number of peers in the DHT routing table.
func (n *Node) RoutingTableSize() int { return n.kad.RoutingTable().Size() }

// Close stops every announcement (see the package doc for what that means
// for remote records), then the DHT and the host.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	anns := make([]*Announcement, 0, len(n.ann))
	for a := range n.ann {
		anns = append(anns, a)
	}
	n.mu.Unlock()
	for _, a := range anns {
		a.Stop()
	}
	n.host.RemoveStreamHandler(InfoProtocol)
	return errors.Join(n.kad.Close(), n.host.Close())
}
