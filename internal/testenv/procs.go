package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// BuildStrata builds the strata command of this repository into a
// temporary directory of t and returns its path. Without a go tool the
// test is skipped.
func BuildStrata(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool:", err)
	}
	bin := filepath.Join(t.TempDir(), "strata")
	out, err := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, "github.com/stratanet/strata/cmd/strata").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Running lists the processes that run the executable bin, and this
// process's children named like it that have exited but were not waited
// for (zombies, which have no executable any more), as "pid state cmdline"
// lines. ok is false where it cannot tell (no /proc).
func Running(bin string) (procs []string, ok bool) {
	if runtime.GOOS != "linux" {
		return nil, false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	self := os.Getpid()
	name := filepath.Base(bin)
	if len(name) > 15 { // the kernel's comm is at most 15 bytes
		name = name[:15]
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		if exe == bin || (ppid == self && comm == name) {
			cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
			procs = append(procs, strings.Join([]string{e.Name(), f[0], strings.ReplaceAll(string(cmdline), "\x00", " ")}, " "))
		}
	}
	return procs, true
}
