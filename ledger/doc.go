// Package ledger keeps a node's credits and reputation: an append-only,
// hash-chained, signed record of the work it served and consumed and of
// what it saw other peers do, in an embedded, crash-safe database
// (bbolt), that any peer can fetch and audit.
//
// # Records
//
// A chain is a sequence of records numbered from 0. Record 0 is the
// genesis record, whose payload names the owner's Ed25519 public key;
// every record is signed with that key. A record's encoding is:
//
//	offset  size  field
//	0       1     format version, 1
//	1       8     seq, big-endian: 0 for genesis, then +1 per record
//	9       32    prev: BLAKE3-256 of the previous record's whole encoding
//	              (signature included); 32 zero bytes for genesis
//	41      1     kind: 1 genesis, 2 work, 3 spend, 4 reputation, 5 fork proof
//	42      8     time, Unix nanoseconds, big-endian; never less than the
//	              previous record's
//	50      4     payload length n, big-endian, at most 1 MiB
//	54      n     payload: msgpack of the kind's struct (unknown fields are
//	              errors)
//	54+n    64    Ed25519 signature over "strata/ledger/v1\x00" followed by
//	              bytes [0, 54+n)
//
// Payloads: [Genesis]; [WorkReceipt] for work (the owner served it) and
// spend (the owner consumed it) records, carrying the server's signature
// and the client's countersignature; [ReputationEvent]; [ForkProof]. A
// record is valid only if its payload decodes strictly and the signatures
// inside it verify, so a chain cannot hold a receipt its counterparty did
// not sign.
//
// Changing any byte of a stored record breaks its signature, its payload
// or the next record's link; [Verifier] reports the first record that
// fails, by seq.
//
// # Storage
//
// Records live in the bbolt bucket "records", keyed by seq (8 bytes,
// big-endian), valued by their encoding. Appends are group committed: the
// records of all appends waiting at a commit are written in one
// transaction, and an append returns only after bbolt's commit (and its
// fsync) did, so an acknowledged record survives a crash.
//
// A node that loses its ledger file and opens a new one with the same
// identity starts a second chain from a new genesis record: auditors who
// saw the first one will, rightly, prove a fork.
//
// # Settlement and audit
//
// At the end of a session the client settles with each server over
// /strata/settle/1.0.0 ([Settle], [ServeSettle]): it drafts the work
// receipt from the receipts it got (positions, steps, the hash of the step
// outputs, and how verification judged them), the server checks the draft
// against what it computed and signs it, the client countersigns it and
// records it as spend, and the server records it as work.
//
// /strata/ledger/1.0.0 serves a node's chain to auditors ([ServeAudit],
// [Audit], [Auditor]). Frames are a 4-byte big-endian length and bytes. The
// request is a msgpack map {"from", "to"} (to exclusive; 0 or past the
// head means the head), at most 64 bytes; the answer a header {"len",
// "head"} (the chain's length and its last record's hash) followed by one
// frame per record, or {"err"} alone. A server may answer fewer records
// than asked (its page); the auditor asks again from where it stopped, and
// checks every record, the owner's key against the peer id, and the head.
// An [Auditor] remembers what it verified; a different record at a seq it
// saw before is a fork, recorded with its proof ([ForkProof]) in the
// auditor's own chain, and the forking peer's reputation drops.
//
// # Priority
//
// A busy server ranks the steps waiting for its compute by their clients'
// balances as audits of their chains prove them ([Balances]), with aging
// so that a client without credits is still served.
//
// # Credits
//
// A credit is a normalized GPU-hour (see [Policy]): a receipt is worth the
// FLOPs its blocks and positions take, counted from the model's shape
// ([Shape.FLOPs]) and never from time a node reports, at a reference rate.
// Work verification accepted earns in full, unchecked work at a discount,
// work with blame nothing. [Account] replays a chain to the balances it
// proves.
package ledger
