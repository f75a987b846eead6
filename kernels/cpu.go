package kernels

import "golang.org/x/sys/cpu"

// cpuHas reports whether the CPU has the instruction sets path p uses.
func cpuHas(p Path) bool {
	x := &cpu.X86
	switch p {
	case Generic:
		return true
	case AVX2:
		return x.HasAVX2 && x.HasFMA && x.HasF16C && x.HasBMI2
	case AVX512:
		return x.HasAVX2 && x.HasFMA && x.HasF16C && x.HasBMI2 &&
			x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512VNNI &&
			x.HasAVX512VBMI
	case AMX:
		return cpuHas(AVX512) && x.HasAMXTile && x.HasAMXInt8 && amxPermitted
	}
	return false
}
