module github.com/stratanet/strata

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/zeebo/blake3 v0.2.4
	golang.org/x/sys v0.49.0
	gonum.org/v1/gonum v0.17.0
)

require github.com/klauspost/cpuid/v2 v2.0.12 // indirect
