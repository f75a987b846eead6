//go:build amd64 && !purego

package kernels

import "testing"

// TestPathSelection fails when this build has assembly and the CPU has
// AVX2, but the products would run the generic path (the AVX2 path was not
// registered, or Best passed it over).
func TestPathSelection(t *testing.T) {
	if !cpuHas(AVX2) {
		t.Skip("CPU lacks AVX2, FMA, F16C or BMI2")
	}
	if AVX2.Kernels() == nil {
		t.Fatal("AVX2.Kernels() = nil on a CPU with AVX2 in an assembly build")
	}
	if got := Best(); got == Generic {
		t.Errorf("Best() = %v, want a SIMD path on a CPU with AVX2", got)
	}
	e, err := NewEngine(Best(), nil)
	if err != nil {
		t.Fatalf("NewEngine(%v, nil) = %v", Best(), err)
	}
	if e.Path() == Generic || e.k == &genericKernels {
		t.Errorf("NewEngine(Best()) runs the generic kernels")
	}
}
