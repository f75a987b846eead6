package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// EnvNodeLlamaCpp is the folder of the node-llama-cpp npm install (holding
// node_modules/node-llama-cpp) that ../shared/oracle/oracle.mjs drives.
const EnvNodeLlamaCpp = "NODE_LLAMA_CPP_DIR"

// Oracle returns the node binary and the path of ../shared/oracle/oracle.mjs
// for running llama.cpp as the reference. A missing node, oracle script or
// $NODE_LLAMA_CPP_DIR skips the test (fails it under CI).
func Oracle(t testing.TB) (node, script string) {
	t.Helper()
	script = Shared(t, "oracle/oracle.mjs")
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node is not installed: %v", err)
	}
	dir := os.Getenv(EnvNodeLlamaCpp)
	if dir == "" {
		missing(t, "$%s is not set (an npm install of node-llama-cpp, see ../shared/oracle/README.md)", EnvNodeLlamaCpp)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "node-llama-cpp", "package.json")); err != nil {
		missing(t, "$%s=%s has no node-llama-cpp: %v", EnvNodeLlamaCpp, dir, err)
	}
	return node, script
}
