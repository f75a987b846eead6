// Package consensus decides, for one step of one pipeline stage, which output
// the stage's replicas agree on and whom to blame for disagreeing.
//
// It is a pure, deterministic core in the manner of etcd raft's quorum
// package: no I/O, no clock, no randomness, no imports from the rest of the
// repository. Replicas are identified by their peer id as a string. The
// driver (relay/ and the client) collects signed receipts, turns them into
// [Vote]s, calls [Decide], acts on the returned [Decision] (forward the
// winning output, repair or drop poisoned replicas) and feeds it to a
// [Reputation] with [Report].
//
// # Rules
//
// With redundancy r (the number of replicas expected, including those that
// did not answer), an output hash W wins when strictly more than r/2 replicas
// voted for it. Missing votes count against a majority: with r = 4, two
// agreeing votes are not enough.
//
// Every replica attests, besides its output, the hash of the step's input and
// a running hash of every input its session consumed (its KV cache's
// history). Among the replicas that voted for W, the most common (input,
// history) pair is the reference pair. A replica is then
//
//   - [Agreed] when it produced W from the reference pair;
//   - [Faulty] (blamed) when it produced something else from the reference
//     pair: it saw what the majority saw and computed a different result;
//   - [Poisoned] when it produced something else from a different pair: its
//     input or cache was built on someone else's bad output, so it is
//     repaired (rolled back and replayed) or dropped and re-routed, never
//     blamed;
//   - [Inconsistent] when it produced W but claims a different pair: its
//     receipt does not add up, which is suspicious but not proof of fault;
//   - [Missing] when it did not vote (timed out).
//
// When the voters for W are split and two or more pairs tie for most common,
// there is no reference pair and nobody can be shown to have computed wrongly
// from the right input: every voter for W is Inconsistent and every other
// voter is Poisoned (untrusted and to be repaired, but not blamed). Without a
// majority every voter is [NoMajority] and nobody is blamed.
//
// # What a majority cannot see
//
// Majority voting assumes that most replicas are honest. If a majority of the
// replicas collude on the same wrong output, that output wins and the honest
// minority is the one blamed. Decide cannot detect this; it exposes the
// minority through [Decision.Dissenters] so that callers can audit it (for
// example by re-running the step on other nodes) and by choosing replicas so
// that collusion is unlikely.
package consensus
