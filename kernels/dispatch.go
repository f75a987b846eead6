package kernels

import (
	"fmt"
	"os"
	"strings"
)

// Path is an implementation of the kernels: every path computes the same
// bits (see the package doc); they differ only in speed.
type Path int

const (
	// Generic is portable Go, the reference every other path is tested
	// against.
	Generic Path = iota
	// AVX2 uses AVX2 and FMA assembly (amd64).
	AVX2
	// AVX512 uses AVX-512 (F, BW, VL, VNNI, VBMI) assembly (amd64):
	// Ice Lake, Sapphire Rapids, Zen 4 and later (Cascade Lake, without
	// VBMI, runs AVX2).
	AVX512
	// AMX is the AVX-512 path with AMX-INT8 tile kernels for the
	// prefill of Q4_0, Q8_0, Q4_K and Q6_K weights: Sapphire Rapids and
	// later, on Linux (the process must ask the kernel for the tile
	// state).
	AMX
)

// EnvKernels forces a path: "generic", "avx2", "avx512" or "amx". A path the CPU
// (or the build) does not support is an error from PathFromEnv.
const EnvKernels = "STRATA_KERNELS"

func (p Path) String() string {
	switch p {
	case Generic:
		return "generic"
	case AVX2:
		return "avx2"
	case AVX512:
		return "avx512"
	case AMX:
		return "amx"
	}
	return fmt.Sprintf("path(%d)", int(p))
}

// ParsePath parses a path name as String prints it.
func ParsePath(s string) (Path, error) {
	for _, p := range []Path{Generic, AVX2, AVX512, AMX} {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("kernels: unknown path %q (generic, avx2, avx512, amx)", s)
}

// Supported reports whether this CPU and build can run path p.
func (p Path) Supported() bool {
	return p == Generic || (p.Kernels() != nil && cpuHas(p))
}

// Best is the fastest path this CPU and build support.
func Best() Path {
	for _, p := range []Path{AMX, AVX512, AVX2} {
		if p.Supported() {
			return p
		}
	}
	return Generic
}

// PathFromEnv returns the path named by $STRATA_KERNELS, or Best when it is
// unset.
func PathFromEnv() (Path, error) {
	s := os.Getenv(EnvKernels)
	if s == "" {
		return Best(), nil
	}
	p, err := ParsePath(s)
	if err != nil {
		return 0, err
	}
	if !p.Supported() {
		return 0, fmt.Errorf("kernels: $%s=%s: this CPU or build does not support it (best: %s)", EnvKernels, s, Best())
	}
	return p, nil
}

// RowKernels is the table of one path's row kernels: the dot product of one
// weight row with one activation vector, following the package doc's
// canonical order. A nil entry falls back to the generic one.
//
// For the 32-block types q and d are the Q8 activation (len(q) = 32*len(d)
// = the row's element count) and s its per-block sums; for the K types q
// and d are the Q8K activation (len(q) = 256*len(d)) and bsums its
// 16-element group sums; w is the row's bytes in ggml's layout. For float
// weights x is the float32 activation and w the row's bytes.
type RowKernels struct {
	Q4_0, Q5_0, Q8_0 func(w []byte, q []int8, d []float32) float32
	Q4_1, Q5_1       func(w []byte, q []int8, d []float32, s []int32) float32
	Q4_K, Q5_K       func(w []byte, q []int8, d []float32, bsums []int16) float32
	Q6_K             func(w []byte, q []int8, d []float32) float32
	F32, F16, BF16   func(w []byte, x []float32) float32
}

// Kernels returns path p's row kernels with nil entries filled from the
// generic path, or nil when this build has no such path.
func (p Path) Kernels() *RowKernels {
	if p == Generic {
		return &genericKernels
	}
	k, ok := pathKernels[p]
	if !ok {
		return nil
	}
	return k
}

// pathKernels holds the assembly paths of this build, filled by init
// functions (dispatch_amd64.go) and never changed afterwards.
var pathKernels = map[Path]*RowKernels{}

// registerPath installs a path's kernels, filling its nil entries from the
// generic ones. Called only from init functions.
func registerPath(p Path, k RowKernels) {
	g := &genericKernels
	fill := func(dst *func(w []byte, q []int8, d []float32) float32, src func(w []byte, q []int8, d []float32) float32) {
		if *dst == nil {
			*dst = src
		}
	}
	fill(&k.Q4_0, g.Q4_0)
	fill(&k.Q5_0, g.Q5_0)
	fill(&k.Q8_0, g.Q8_0)
	fill(&k.Q6_K, g.Q6_K)
	if k.Q4_1 == nil {
		k.Q4_1 = g.Q4_1
	}
	if k.Q5_1 == nil {
		k.Q5_1 = g.Q5_1
	}
	if k.Q4_K == nil {
		k.Q4_K = g.Q4_K
	}
	if k.Q5_K == nil {
		k.Q5_K = g.Q5_K
	}
	for _, f := range []struct {
		dst, src *func(w []byte, x []float32) float32
	}{{&k.F32, &g.F32}, {&k.F16, &g.F16}, {&k.BF16, &g.BF16}} {
		if *f.dst == nil {
			*f.dst = *f.src
		}
	}
	pathKernels[p] = &k
}
