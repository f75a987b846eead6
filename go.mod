module github.com/stratanet/strata

go 1.26

require (
	github.com/google/go-cmp v0.7.0
	github.com/zeebo/blake3 v0.2.4
)

require github.com/klauspost/cpuid/v2 v2.0.12 // indirect
