// Command strata is the one binary of the Strata swarm: it inspects and
// synthesizes models, tokenizes text, and (as the project grows) serves
// blocks of a model, generates through a swarm and benchmarks layouts.
//
// Run "strata help" for the list of commands and "strata CMD --help" for
// the flags of each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run receives the arguments after its name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env carries what a command may touch of the outside world, so tests run
// commands in-process.
type env struct {
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{"demo", "run a whole swarm in this process on a built-in default model and generate through it", runDemo},
		{"serve", "serve a span of a model's blocks to the swarm", runServe},
		{"generate", "generate text through the swarm", runGenerate},
		{"run", "generate text with the whole model on this machine", runRun},
		{"inspect", "show a model's architecture, hyper-parameters, tokenizer and tensors", runInspect},
		{"tokenize", "turn text into token ids with a model's tokenizer", runTokenize},
		{"weights", "model files: synth, convert, manifest", runWeights},
		{"bench", "benchmarks: run, swarm", runBench},
		{"credits", "this node's GPU-hour credits: balance, history, verify", runCredits},
		{"peers", "the peers serving a model, with the reputation this node gives them", runPeers},
		{"version", "print the version", runVersion},
	}
}

// version is the release of this build.
const version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// errUsage marks an error in the command line (exit status 2).
var errUsage = errors.New("usage")

// run runs one command line and returns the exit status.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return run(ctx, e, []string{args[1], "--help"})
		}
		usage(e.stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(e.stderr, "strata %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(e.stderr, "strata %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "strata: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Strata: a peer-to-peer swarm that runs one large language model across many machines.")
	fmt.Fprintln(w, "\nUsage: strata COMMAND [flags]   (strata COMMAND --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// newFlags makes a flag set whose --help prints the synopsis, the
// description and the flags to the command's stdout.
func newFlags(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := e.stdout
		fmt.Fprintf(w, "Usage: strata %s\n\n%s\n", synopsis, description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(e.stderr)
		}
	}
	return fs
}

// parse parses flags and positional arguments in any order ("inspect M
// --json" as well as "inspect --json M") and checks the positional count.
func parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		want := fmt.Sprint(minPos)
		if maxPos != minPos {
			want = fmt.Sprintf("%d to %d", minPos, maxPos)
		}
		return nil, fmt.Errorf("%w: want %s arguments, got %d (%s)", errUsage, want, len(pos), strings.Join(pos, " "))
	}
	return pos, nil
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "version", "version", "Print the version of this build.")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "strata %s\n", version)
	return nil
}

// defaultThreads is the number of kernel threads when --threads is not
// given: one per core.
func defaultThreads() int { return runtime.NumCPU() }
