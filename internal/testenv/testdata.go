// Package testenv finds the test data that lives outside the repository:
// the shared directory (models, golden outputs from llama.cpp) and
// llama.cpp's vocabulary test files.
//
// The shared directory is $STRATA_SHARED, or else `../shared` next to the
// repository root (the directory holding go.mod, found by walking up from
// the test's working directory). llama.cpp's `models` directory (the
// ggml-vocab-*.gguf files with their .inp/.out pairs) is
// $STRATA_LLAMACPP_MODELS.
//
// When data is missing, a test is skipped with a message saying why, except
// under CI (the environment variable CI set to a non-empty value), where
// missing data fails the test.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Environment variables.
const (
	EnvShared         = "STRATA_SHARED"
	EnvLlamaCppModels = "STRATA_LLAMACPP_MODELS"
	EnvCI             = "CI"
)

// CI reports whether tests run under CI, where missing data is a failure.
func CI() bool { return os.Getenv(EnvCI) != "" }

// missing skips the test, or fails it under CI.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("testenv: %s (CI is set, so missing test data is a failure)", msg)
	}
	t.Skipf("testenv: %s; skipping", msg)
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dir
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// SharedDir returns the shared test data directory.
func SharedDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(EnvShared); dir != "" {
		if !isDir(dir) {
			missing(t, "$%s=%s is not a directory", EnvShared, dir)
		}
		return dir
	}
	root, err := repoRoot()
	if err != nil {
		missing(t, "cannot find the shared directory: %v; set $%s", err, EnvShared)
	}
	dir := filepath.Join(filepath.Dir(root), "shared")
	if !isDir(dir) {
		missing(t, "shared directory %s not found; set $%s", dir, EnvShared)
	}
	return dir
}

// Shared returns the path of rel (slash-separated, e.g.
// "models/stories260K.gguf") in the shared directory. A missing file skips
// the test (fails it under CI).
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(SharedDir(t), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		missing(t, "shared file %s: %v", rel, err)
	}
	return p
}

// SharedGlob returns the files of the shared directory that match pattern
// (filepath.Match syntax, slash-separated, e.g. "golden/*.p1.json"). No
// match skips the test (fails it under CI).
func SharedGlob(t testing.TB, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(SharedDir(t), filepath.FromSlash(pattern)))
	if err != nil {
		t.Fatalf("testenv: bad pattern %q: %v", pattern, err)
	}
	if len(paths) == 0 {
		missing(t, "no shared files match %s", pattern)
	}
	return paths
}

// LlamaCppModels returns the directory of llama.cpp's vocabulary test
// files, from $STRATA_LLAMACPP_MODELS. Unset or not a directory skips the
// test (fails it under CI).
func LlamaCppModels(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvLlamaCppModels)
	if dir == "" {
		missing(t, "$%s is not set (llama.cpp's models directory with ggml-vocab-*.gguf)", EnvLlamaCppModels)
	}
	if !isDir(dir) {
		missing(t, "$%s=%s is not a directory", EnvLlamaCppModels, dir)
	}
	return dir
}

// LlamaCppModel returns the path of file name in LlamaCppModels. A missing
// file skips the test (fails it under CI).
func LlamaCppModel(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(LlamaCppModels(t), name)
	if _, err := os.Stat(p); err != nil {
		missing(t, "llama.cpp test file %s: %v", name, err)
	}
	return p
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
