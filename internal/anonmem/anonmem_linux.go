//go:build linux

package anonmem

import (
	"fmt"
	"sync"
	"syscall"
)

// madvHugePage is MADV_HUGEPAGE; a kernel that refuses the advice leaves
// the pages small, which only costs speed.
const madvHugePage = 14

func alloc(n int) ([]byte, func(), error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, fmt.Errorf("anonmem: map %d bytes: %w", n, err)
	}
	_ = syscall.Madvise(b, madvHugePage)
	var once sync.Once
	return b, func() { once.Do(func() { _ = syscall.Munmap(b) }) }, nil
}
