// Package dht finds who serves which blocks of which model.
//
// A [Node] owns one libp2p host (TCP and QUIC only, no relay, no NAT port
// mapping, no hole punching, no AutoNAT service) with an Ed25519 identity
// kept in the node's data directory, and a Kademlia DHT that speaks only the
// private protocol prefix "/strata" (so it never joins the public IPFS DHT)
// and bootstraps only from the peers it is given.
//
// # Provider records
//
// A server announces each block it serves as a provider record keyed by
// [BlockKey]: a CIDv1 (raw codec) over the SHA2-256 multihash of
// "strata/v1/" + model id (32 bytes) + block index (8 bytes, big-endian).
// [Node.Announce] provides every block of a span at once and then again every
// refresh interval ([WithRefreshInterval]), which must stay well under the
// record lifetime ([WithRecordTTL]) that every Strata node applies to the
// records it stores for others.
//
// Kademlia has no delete. Stopping an [Announcement] (or closing the node)
// withdraws it locally: the refresh loop ends and the node stops putting the
// record anywhere. Copies already stored on remote peers are not deleted;
// they expire there once the record TTL has passed since the last refresh,
// and until then a finder can still be told about a peer that has left. A
// client must therefore treat provider records as hints and confirm each peer
// with [Node.Info] before it routes through it.
//
// # Info protocol
//
// A server answers [InfoProtocol] ("/strata/info/1.0.0") with one frame: a
// 4-byte big-endian length followed by that many bytes of msgpack encoding
// the [Info] fields (see [EncodeInfo]), the server's running [Counters]
// (steps, compute time, bytes sent) included; the length is capped at
// [MaxInfoFrame]. Unknown keys are skipped, so newer peers may add fields.
// The client writes nothing and closes its write side. Every stream has a
// deadline and is reset on error. Clients keep answers in an expirable LRU
// cache ([WithInfoCache]); [Node.FetchInfo] asks afresh.
package dht
