//go:build !linux || !amd64 || purego

package kernels

// amxPermitted is false outside Linux on amd64: no other system is known
// here to hand out the AMX tile state, so the AMX path is never used.
const amxPermitted = false
