// Package amxenc writes the AMX (AMX-TILE, AMX-INT8) instructions into
// avo-generated assembly as BYTE lines: neither avo nor the Go assembler
// knows them. Every register these instructions name must be a physical
// general-purpose register (reg.RAX, ...), since the bytes encode it; the
// encodings are the ones of docs/amx.md, checked on Sapphire Rapids, with
// memory operands of any base, index and displacement.
package amxenc

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// Raw emits one instruction as bytes, after a comment naming it.
func Raw(name string, b ...byte) {
	Comment(name)
	for _, x := range b {
		Instruction(&ir.Instruction{Opcode: "BYTE", Operands: []Op{U8(x)}})
	}
}

// idx is the hardware number of physical register r.
func idx(r reg.Register) byte {
	p, ok := r.(reg.Physical)
	if !ok {
		panic(fmt.Sprintf("amxenc: %s is not a physical register", r.Asm()))
	}
	return byte(p.PhysicalIndex())
}

// vex returns a three-byte VEX prefix (map 0F38, W0, L0) for the ModRM
// reg extension r, SIB index extension x, and base extension b, the
// vvvv register and the pp field.
func vex(r, x, b, vvvv, pp byte) []byte {
	return []byte{0xc4, (^(r<<7 | x<<6 | b<<5) & 0xe0) | 0x02, (^vvvv&0xf)<<3 | pp}
}

// mem returns the VEX prefix, opcode op, ModRM (reg field rg), SIB and
// displacement bytes of memory operand m: a base, an optional index of
// scale 1 (sib forces a SIB byte, as the tile loads and stores need) and
// a displacement.
func mem(pp, op, rg byte, m Mem, sib bool) []byte {
	if m.Base == nil {
		panic("amxenc: memory operand without a base")
	}
	if m.Index != nil && m.Scale != 1 {
		panic("amxenc: index scale other than 1")
	}
	bi := idx(m.Base)
	var ii byte = 4 // no index
	if m.Index != nil {
		ii = idx(m.Index)
		if ii == 4 {
			panic("amxenc: SP as an index")
		}
	}
	useSIB := sib || m.Index != nil || bi&7 == 4
	var mod byte
	var disp []byte
	switch d := m.Disp; {
	case d == 0 && bi&7 != 5:
		mod = 0
	case d >= -128 && d < 128:
		mod, disp = 1, []byte{byte(int8(d))}
	default:
		mod, disp = 2, []byte{byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)}
	}
	b := vex(0, ii>>3, bi>>3, 0, pp)
	b = append(b, op)
	if useSIB {
		b = append(b, mod<<6|rg<<3|4, (ii&7)<<3|bi&7)
	} else {
		b = append(b, mod<<6|rg<<3|bi&7)
	}
	return append(b, disp...)
}

func memAsm(m Mem) string {
	s := fmt.Sprintf("(%s)", m.Base.Asm())
	if m.Index != nil {
		s += fmt.Sprintf("(%s*1)", m.Index.Asm())
	}
	if m.Disp != 0 {
		s = fmt.Sprint(m.Disp) + s
	}
	return s
}

// TileLoad emits TILELOADD tmm t, m: the rows of tile t from m.Base +
// m.Disp, m.Index bytes apart.
func TileLoad(t int, m Mem) {
	Raw(fmt.Sprintf("TILELOADD tmm%d, %s", t, memAsm(m)), mem(3, 0x4b, byte(t), m, true)...)
}

// TileStore emits TILESTORED m, tmm t.
func TileStore(m Mem, t int) {
	Raw(fmt.Sprintf("TILESTORED %s, tmm%d", memAsm(m), t), mem(2, 0x4b, byte(t), m, true)...)
}

// TileZero emits TILEZERO tmm t.
func TileZero(t int) {
	Raw(fmt.Sprintf("TILEZERO tmm%d", t), append(vex(0, 0, 0, 0, 3), 0x49, 0xc0|byte(t)<<3)...)
}

// tdp emits one of the TDPB..D instructions (pp: 3 SSD, 2 SUD, 1 USD, 0
// UUD): C[m][n] += Σ_k A[m][k]·B[k/4][4n+k%4].
func tdp(name string, pp byte, c, a, b int) {
	Raw(fmt.Sprintf("%s tmm%d, tmm%d, tmm%d", name, c, a, b), append(vex(0, 0, 0, byte(b), pp), 0x5e, 0xc0|byte(c)<<3|byte(a))...)
}

// TDPBSSD emits TDPBSSD tmm c, tmm a, tmm b: A and B signed bytes.
func TDPBSSD(c, a, b int) { tdp("TDPBSSD", 3, c, a, b) }

// TDPBUSD emits TDPBUSD tmm c, tmm a, tmm b: A unsigned, B signed bytes.
func TDPBUSD(c, a, b int) { tdp("TDPBUSD", 1, c, a, b) }

// LDTILECFG emits LDTILECFG (base): the 64-byte tile configuration.
func LDTILECFG(base reg.Register) {
	Raw(fmt.Sprintf("LDTILECFG (%s)", base.Asm()), mem(0, 0x49, 0, Mem{Base: base}, false)...)
}

// TILERELEASE emits TILERELEASE.
func TILERELEASE() { Raw("TILERELEASE", append(vex(0, 0, 0, 0, 0), 0x49, 0xc0)...) }
