// Package bench holds Strata's benchmarks: the machine yardsticks that
// kernel speeds are read against (memory read bandwidth bounds a matrix-
// vector product, which streams every weight once per token), and later
// shard-layout benchmarks, network emulation and swarm simulation.
//
// Benchmarks run with go test -bench, are named with their sizes
// (BenchmarkReadBandwidth/size=1GiB/threads=2), and report bytes per
// second through b.SetBytes.
package bench
