package weights

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// ModelID identifies a model by content: the BLAKE3 hash of its canonical
// manifest. Two files with the same tensors and the same computation-
// relevant metadata have the same id, whatever their tensor order,
// alignment or descriptive metadata (names, licences, URLs).
type ModelID [32]byte

// String returns the id in lower-case hex.
func (id ModelID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 12 hex digits, for people.
func (id ModelID) Short() string { return id.String()[:12] }

// ErrModelID is returned by ParseModelID for malformed input.
var ErrModelID = errors.New("weights: malformed model id")

// ParseModelID parses the 64-digit hex form of an id.
func ParseModelID(s string) (ModelID, error) {
	var id ModelID
	if len(s) != 64 {
		return id, fmt.Errorf("%w: %d characters, want 64", ErrModelID, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w: %w", ErrModelID, err)
	}
	return id, nil
}

// Digest is a BLAKE3-256 hash.
type Digest [32]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText encodes the digest as hex (for JSON).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// MarshalText encodes the id as hex (for JSON).
func (id ModelID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes the hex form.
func (id *ModelID) UnmarshalText(b []byte) error {
	v, err := ParseModelID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// UnmarshalText decodes the hex form.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseModelID(string(b))
	if err != nil {
		return err
	}
	*d = Digest(v)
	return nil
}

// MetaDigest is the hash of one computation-relevant metadata value.
type MetaDigest struct {
	Key  string `json:"key"`
	Hash Digest `json:"blake3"`
}

// TensorDigest is the hash of one tensor's bytes.
type TensorDigest struct {
	Name string     `json:"name"`
	Type quant.Type `json:"-"`
	Dims []int64    `json:"dims"`
	Size int64      `json:"bytes"`
	Hash Digest     `json:"blake3"`
}

// Manifest lists the hashes of a model's computation-relevant metadata and
// of every tensor. Peers compare model ids to agree on what they serve and
// fetch tensors from each other by hash.
//
// The canonical form hashed into the ID is UTF-8 text:
//
//	strata-manifest v1
//	meta <key> <blake3 of the value's GGUF encoding (type tag + value)>
//	...                                (one line per key, sorted by key)
//	tensor <name> <type> <d0>x<d1>... <blake3 of the tensor's bytes>
//	...                                (one line per tensor, sorted by name)
//
// each line ending in "\n". The metadata included is general.architecture,
// general.quantization_version, every "<arch>." key and every
// "tokenizer.ggml." key: what changes the computation or the tokens.
type Manifest struct {
	Arch    string         `json:"architecture"`
	Meta    []MetaDigest   `json:"metadata"`
	Tensors []TensorDigest `json:"tensors"`
	ID      ModelID        `json:"model_id"`
}

// manifestKey reports whether a metadata key is part of the manifest.
func manifestKey(arch, key string) bool {
	return key == "general.architecture" || key == "general.quantization_version" ||
		strings.HasPrefix(key, arch+".") || strings.HasPrefix(key, "tokenizer.ggml.")
}

// Canonical returns the canonical text whose BLAKE3 is the model id.
func (m *Manifest) Canonical() []byte {
	var b bytes.Buffer
	b.WriteString("strata-manifest v1\n")
	for _, md := range m.Meta {
		fmt.Fprintf(&b, "meta %s %s\n", md.Key, md.Hash)
	}
	for _, t := range m.Tensors {
		dims := make([]string, len(t.Dims))
		for i, d := range t.Dims {
			dims[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(&b, "tensor %s %s %s %s\n", t.Name, t.Type, strings.Join(dims, "x"), t.Hash)
	}
	return b.Bytes()
}

// ComputeManifest hashes the file at path with up to workers goroutines
// (0 means GOMAXPROCS). Tensors are read with positioned reads into one
// 1 MiB buffer per worker, so memory stays bounded whatever the file size.
func ComputeManifest(path string, workers int) (*Manifest, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return manifestOf(f, fh, workers)
}

// ManifestOf hashes an open file, reading tensor bytes from its mapping.
func ManifestOf(f *gguf.File, workers int) (*Manifest, error) {
	return manifestOf(f, bytes.NewReader(f.Bytes()), workers)
}

func manifestOf(f *gguf.File, r io.ReaderAt, workers int) (*Manifest, error) {
	arch, err := f.Metadata.String("general.architecture")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHParams, err)
	}
	m := &Manifest{Arch: arch}
	for _, kv := range f.Metadata.SortedKVs() {
		if !manifestKey(arch, kv.Key) {
			continue
		}
		enc, err := gguf.AppendKV(nil, gguf.KV{Value: kv.Value})
		if err != nil {
			return nil, err
		}
		// Drop the empty key's 8-byte length: hash the type tag and value.
		m.Meta = append(m.Meta, MetaDigest{Key: kv.Key, Hash: blake3.Sum256(enc[8:])})
	}

	m.Tensors = make([]TensorDigest, len(f.Tensors))
	for i, ti := range f.Tensors {
		m.Tensors[i] = TensorDigest{Name: ti.Name, Type: ti.Type, Dims: slices.Clone(ti.Dims), Size: ti.Size}
	}
	// Largest first, so the last tensors to finish are small ones.
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(f.Tensors[b].Size, f.Tensors[a].Size) })

	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	jobs := make(chan int)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			h := blake3.New()
			for i := range jobs {
				if errs[w] != nil {
					continue
				}
				ti := &f.Tensors[i]
				h.Reset()
				sr := io.NewSectionReader(r, int64(f.DataOffset+ti.Offset), ti.Size)
				if _, err := io.CopyBuffer(h, sr, buf); err != nil {
					errs[w] = fmt.Errorf("tensor %s: %w", ti.Name, err)
					continue
				}
				h.Sum(m.Tensors[i].Hash[:0])
			}
		}()
	}
	for _, i := range order {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(m.Tensors, func(a, b TensorDigest) int { return strings.Compare(a.Name, b.Name) })
	m.ID = blake3.Sum256(m.Canonical())
	return m, nil
}
