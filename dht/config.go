package dht

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Clock makes the timers that pace announcement refreshes. Pass a fake one to
// drive refreshes in tests; the default is the system clock. Stream deadlines
// are wall-clock times handed to the network stack and do not use it.
type Clock interface {
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Defaults used by [New].
const (
	DefaultRefreshInterval = 10 * time.Minute
	DefaultRecordTTL       = time.Hour
	DefaultInfoCacheTTL    = 30 * time.Second
	DefaultInfoCacheSize   = 1024
	DefaultStreamTimeout   = 10 * time.Second
	DefaultBootstrapWait   = 30 * time.Second
)

// ErrConfig is returned by [New] for an invalid option.
var ErrConfig = errors.New("dht: invalid config")

// Config holds the settings of a [Node]. Build it with options; [New] applies
// the defaults first and validates last.
type Config struct {
	DataDir         string          // where the identity key lives; required
	ListenAddrs     []ma.Multiaddr  // default: TCP and QUIC on 0.0.0.0, any port
	Bootstrap       []peer.AddrInfo // peers to join through; none for the first node
	Server          bool            // DHT server mode (serving nodes); false: client mode
	ForcePrivate    bool            // force private reachability (tests, LANs)
	RefreshInterval time.Duration   // how often announcements are provided again
	RecordTTL       time.Duration   // lifetime of provider records this node stores
	BootstrapWait   time.Duration   // how long New waits for a routing table entry
	StreamTimeout   time.Duration   // deadline of each info stream
	InfoCacheTTL    time.Duration   // how long an Info answer is reused
	InfoCacheSize   int             // how many peers' Info answers are kept
	InfoFunc        func() Info     // live values for the info server; nil: no server
	Clock           Clock
	Logger          *slog.Logger
}

// Option changes a [Config].
type Option func(*Config) error

// Defaults is the first option [New] applies.
func Defaults(c *Config) error {
	c.ListenAddrs = []ma.Multiaddr{
		ma.StringCast("/ip4/0.0.0.0/tcp/0"),
		ma.StringCast("/ip4/0.0.0.0/udp/0/quic-v1"),
	}
	c.RefreshInterval = DefaultRefreshInterval
	c.RecordTTL = DefaultRecordTTL
	c.BootstrapWait = DefaultBootstrapWait
	c.StreamTimeout = DefaultStreamTimeout
	c.InfoCacheTTL = DefaultInfoCacheTTL
	c.InfoCacheSize = DefaultInfoCacheSize
	c.Clock = systemClock{}
	c.Logger = slog.New(slog.DiscardHandler)
	return nil
}

// WithDataDir sets the node's data directory (created 0700 if missing).
func WithDataDir(dir string) Option {
	return func(c *Config) error { c.DataDir = dir; return nil }
}

// WithListenAddrs replaces the listen addresses.
func WithListenAddrs(addrs ...string) Option {
	return func(c *Config) error {
		c.ListenAddrs = c.ListenAddrs[:0:0]
		for _, s := range addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return fmt.Errorf("listen address %q: %w", s, err)
			}
			c.ListenAddrs = append(c.ListenAddrs, a)
		}
		return nil
	}
}

// WithBootstrap adds bootstrap peers given as multiaddrs ending in /p2p/ID.
func WithBootstrap(addrs ...string) Option {
	return func(c *Config) error {
		for _, s := range addrs {
			ai, err := peer.AddrInfoFromString(s)
			if err != nil {
				return fmt.Errorf("bootstrap address %q: %w", s, err)
			}
			c.Bootstrap = append(c.Bootstrap, *ai)
		}
		return nil
	}
}

// WithBootstrapPeers adds bootstrap peers.
func WithBootstrapPeers(peers ...peer.AddrInfo) Option {
	return func(c *Config) error { c.Bootstrap = append(c.Bootstrap, peers...); return nil }
}

// WithServer puts the DHT in server mode: the node stores records for others
// and answers queries. Serving nodes use it; pure clients do not.
func WithServer() Option { return func(c *Config) error { c.Server = true; return nil } }

// WithForcePrivate forces the host to consider itself privately reachable.
func WithForcePrivate() Option { return func(c *Config) error { c.ForcePrivate = true; return nil } }

// WithRefreshInterval sets how often announcements are provided again.
func WithRefreshInterval(d time.Duration) Option {
	return func(c *Config) error { c.RefreshInterval = d; return nil }
}

// WithRecordTTL sets how long this node keeps provider records it stores for
// others. All nodes of a swarm should agree on it.
func WithRecordTTL(d time.Duration) Option {
	return func(c *Config) error { c.RecordTTL = d; return nil }
}

// WithBootstrapWait bounds how long [New] waits for the first routing table
// entry after connecting to the bootstrap peers.
func WithBootstrapWait(d time.Duration) Option {
	return func(c *Config) error { c.BootstrapWait = d; return nil }
}

// WithStreamTimeout sets the deadline of each info stream.
func WithStreamTimeout(d time.Duration) Option {
	return func(c *Config) error { c.StreamTimeout = d; return nil }
}

// WithInfoCache sets the client's Info cache size and entry lifetime.
func WithInfoCache(size int, ttl time.Duration) Option {
	return func(c *Config) error { c.InfoCacheSize, c.InfoCacheTTL = size, ttl; return nil }
}

// WithInfoFunc serves [InfoProtocol]; f is called once per request and must
// return live values quickly.
func WithInfoFunc(f func() Info) Option {
	return func(c *Config) error { c.InfoFunc = f; return nil }
}

// WithClock sets the clock.
func WithClock(clk Clock) Option { return func(c *Config) error { c.Clock = clk; return nil } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Config) error { c.Logger = l; return nil } }

// Validate reports the first invalid setting, wrapped in [ErrConfig].
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.DataDir == "":
		return bad("no data directory")
	case len(c.ListenAddrs) == 0:
		return bad("no listen addresses")
	case c.RefreshInterval <= 0:
		return bad("refresh interval %v must be positive", c.RefreshInterval)
	case c.RecordTTL <= 0:
		return bad("record TTL %v must be positive", c.RecordTTL)
	case c.RefreshInterval > c.RecordTTL/2:
		return bad("refresh interval %v must be at most half the record TTL %v", c.RefreshInterval, c.RecordTTL)
	case c.BootstrapWait <= 0:
		return bad("bootstrap wait %v must be positive", c.BootstrapWait)
	case c.StreamTimeout <= 0:
		return bad("stream timeout %v must be positive", c.StreamTimeout)
	case c.InfoCacheSize <= 0:
		return bad("info cache size %d must be positive", c.InfoCacheSize)
	case c.InfoCacheTTL <= 0:
		return bad("info cache TTL %v must be positive", c.InfoCacheTTL)
	case c.Clock == nil:
		return bad("no clock")
	case c.Logger == nil:
		return bad("no logger")
	}
	for i, ai := range c.Bootstrap {
		if err := ai.ID.Validate(); err != nil {
			return bad("bootstrap peer %d: %v", i, err)
		}
		if len(ai.Addrs) == 0 {
			return bad("bootstrap peer %s has no address", ai.ID)
		}
	}
	return nil
}
