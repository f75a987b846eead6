package gguf

import "syscall"

// releasePages drops the process's mappings of the pages of b (a
// page-aligned part of a read-only file mapping): MADV_DONTNEED, after
// which a read faults them back in from the page cache. An error only
// means the pages stay resident.
func releasePages(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }
