// Package shard runs a contiguous span of a model's transformer blocks for
// sessions, each with its own KV cache; a single machine running every
// block is the special case. It also holds the optional ends of a model
// (token embedding, final norm and output head) and token sampling.
package shard
