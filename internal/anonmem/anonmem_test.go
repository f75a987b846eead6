package anonmem

import "testing"

func TestAlloc(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 3<<20 + 5} {
		b, free, err := Alloc(n)
		if err != nil {
			t.Fatalf("Alloc(%d) = %v", n, err)
		}
		if len(b) != n {
			t.Fatalf("Alloc(%d) gave %d bytes", n, len(b))
		}
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("Alloc(%d)[%d] = %d, want 0", n, i, b[i])
			}
			b[i] = byte(i)
		}
		for i := range b {
			if b[i] != byte(i) {
				t.Fatalf("Alloc(%d)[%d] did not keep its value", n, i)
			}
		}
		free()
		free() // a second call does nothing
	}
}
