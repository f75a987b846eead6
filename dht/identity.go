package dht

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// IdentityFile is the name of the key file in the data directory: a
// libp2p-marshalled Ed25519 private key, mode 0600.
const IdentityFile = "identity.key"

// ErrIdentity is returned when the identity key file exists but cannot be
// used (corrupt, not Ed25519, or readable by others). It is never replaced.
var ErrIdentity = errors.New("dht: unusable identity key")

// LoadOrCreateIdentity returns the Ed25519 key in dir/identity.key, creating
// dir (0700) and a new key (0600) when the file does not exist.
func LoadOrCreateIdentity(dir string) (crypto.PrivKey, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseIdentity(path, b)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("dht: read identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dht: create data directory: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(nil) // nil: crypto/rand
	if err != nil {
		return nil, fmt.Errorf("dht: generate identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dht: marshal identity: %w", err)
	}
	// Write a temporary file and link it into place, so a crash never leaves
	// a half-written key and two racing starts agree on one key.
	tmp, err := os.CreateTemp(dir, IdentityFile+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) { // lost a race: use the winner's key
			return LoadOrCreateIdentity(dir)
		}
		return nil, fmt.Errorf("dht: write identity: %w", err)
	}
	return key, nil
}

func parseIdentity(path string, b []byte) (crypto.PrivKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dht: read identity: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrIdentity, path, st.Mode().Perm())
	}
	key, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIdentity, path, err)
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: %s holds a %v key, want Ed25519", ErrIdentity, path, key.Type())
	}
	return key, nil
}
