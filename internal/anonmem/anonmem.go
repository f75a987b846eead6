// Package anonmem allocates large, long-lived byte buffers outside the Go
// heap: anonymous memory mapped from the OS (advised for transparent huge
// pages), which the garbage collector neither scans nor counts towards its
// heap goal. A shard's copy of its weights lives here, so that a node
// holding tens of GB of weights does not let the heap grow by as much
// again before the next collection.
package anonmem

// Alloc returns n zeroed bytes and the function that frees them (once;
// the bytes must not be used afterwards). Where anonymous mappings are not
// available, the bytes come from the Go heap and free does nothing.
func Alloc(n int) ([]byte, func(), error) {
	if n <= 0 {
		return nil, func() {}, nil
	}
	return alloc(n)
}
