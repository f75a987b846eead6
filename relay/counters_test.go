package relay

import (
	"testing"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
)

// TestInfoCounters: after a generation every server has completed each of
// the chain's steps, and the counters its info protocol reports to another
// process are its stats: completed steps, compute, hashing and signing
// time, bytes sent.
func TestInfoCounters(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, shard.Span{Start: 0, End: 2}, shard.Span{Start: 2, End: 5})
	prompt := sw.prompt("Once upon a time")
	const n = 6
	c := sw.client(ClientConfig{})
	ch, err := c.Open(t.Context(), len(prompt)+n)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := generate(t, t.Context(), sw.ends(), ch, prompt, n, nil); err != nil {
		t.Fatal(err)
	}
	steps := ch.Stats().Steps
	for _, sv := range sw.servers {
		waitFor(t, "every step completed", func() bool { return sv.Server.Stats().Completed == steps })
		st := sv.Server.Stats()
		in, err := c.node.FetchInfo(t.Context(), sv.Node.ID())
		if err != nil {
			t.Fatal(err)
		}
		want := dht.Counters{Steps: steps, Compute: st.ComputeTime, Hash: st.HashTime, Sign: st.SignTime, BytesSent: st.BytesSent}
		if st.Steps != steps || in.Counters != want || st.ComputeTime <= 0 || st.BytesSent <= 0 {
			t.Errorf("server %s: stats %+v, info counters %+v; want %+v", sv.Node.ID(), st, in.Counters, want)
		}
	}
}
