package kernels

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPackQ8 checks packQ8 against its definition for token lengths with
// and without whole groups of eight blocks and with tails.
func TestPackQ8(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 8))
	for _, nb := range []int{0, 1, 7, 8, 9, 16, 23, 64, 70} {
		for _, nt := range []int{1, 2, 5} {
			n := nb * Q8Block
			q := make([]int8, nt*n)
			for i := range q {
				q[i] = int8(r.IntN(255) - 127)
			}
			got := make([]int8, len(q))
			packQ8(got, q, nt)
			want := make([]int8, len(q))
			for tok := range nt {
				for i := range n {
					src := tok*n + i
					g, b, e := i/256, i/32%8, i%32
					dst := src
					if g < nb/8 {
						dst = tok*n + 256*g + 32*(e/4) + 4*b + e%4
					}
					want[dst] = q[src]
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("packQ8(%d blocks, %d tokens) differs from its definition", nb, nt)
			}
		}
	}
}
