module github.com/stratanet/strata/kernels/_asm

go 1.26.0

require (
	github.com/mmcloughlin/avo v0.6.0
	// avo v0.6.0 itself asks for an x/tools that no longer compiles with
	// Go 1.26; v0.52.0 does (see shared/DEPENDENCIES.md).
	golang.org/x/tools v0.52.0 // indirect
)

require (
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)
