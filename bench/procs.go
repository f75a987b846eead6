package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
)

// serveStartTimeout bounds how long a `strata serve` process may take to
// print its address (it opens the model, hashes its tensors and measures
// its throughput first).
const serveStartTimeout = 5 * time.Minute

// procStage is a server running as a `strata serve` process. Its counters
// come from outside, through the info protocol, asked by the client's node.
type procStage struct {
	id   peer.ID
	proc *serveProc
	node *dht.Node // the client's, set once it is up
}

func (p *procStage) peer() peer.ID { return p.id }

func (p *procStage) stats(ctx context.Context) (relay.ServerStats, error) {
	if p.node == nil {
		return relay.ServerStats{}, errors.New("bench: no node to ask the servers with")
	}
	in, err := p.node.FetchInfo(ctx, p.id)
	if err != nil {
		return relay.ServerStats{}, fmt.Errorf("bench: counters of %s: %w%s", p.proc, err, p.proc.tail())
	}
	for _, a := range in.Addrs {
		if !strings.HasPrefix(a.String(), "/ip4/127.0.0.1/") {
			return relay.ServerStats{}, fmt.Errorf("bench: %s listens on %s, not only on 127.0.0.1", p.proc, a)
		}
	}
	c := in.Counters
	return relay.ServerStats{Steps: c.Steps, Completed: c.Steps, ComputeTime: c.Compute, HashTime: c.Hash, SignTime: c.Sign, BytesSent: c.BytesSent}, nil
}

// startProcs starts the servers of spans, replicas of each, as `strata
// serve` processes listening on 127.0.0.1 only: the first on its own, the
// others bootstrapped from it. It returns the client's bootstrap option.
// Every process is killed (and waited for) by s's close, whatever happens
// here.
func (sw *swarmBench) startProcs(ctx context.Context, s *swarm, spans []shard.Span, replicas, threads int, link relay.Link) (dht.Option, error) {
	c := sw.cfg
	var all []shard.Span
	for _, sp := range spans {
		for range replicas {
			all = append(all, sp)
		}
	}
	var mu sync.Mutex // guards s.closers while servers start
	start := func(sp shard.Span, boot string) (*procStage, string, error) {
		mu.Lock()
		dir, err := tempDir(s)
		mu.Unlock()
		if err != nil {
			return nil, "", err
		}
		args := []string{"serve", "--model", c.ModelPath, "--span", fmt.Sprintf("%d:%d", sp.Start, sp.End),
			"--listen", "/ip4/127.0.0.1/tcp/0", "--data", dir, "--threads", strconv.Itoa(threads),
			"--kernels", c.Path.String(), "--kv", c.KVType.String(), "--link", link.String()}
		if boot != "" {
			args = append(args, "--bootstrap", boot)
		}
		p, err := startServe(sw.procs, args)
		if err != nil {
			return nil, "", err
		}
		mu.Lock()
		s.closers = append(s.closers, p.stop)
		mu.Unlock()
		addr, err := p.address(ctx)
		if err != nil {
			return nil, "", err
		}
		info, err := peer.AddrInfoFromString(addr)
		if err != nil {
			return nil, "", fmt.Errorf("bench: %s printed address %q: %w", p, addr, err)
		}
		return &procStage{id: info.ID, proc: p}, addr, nil
	}
	s.stages = make([]stage, len(all))
	first, boot, err := start(all[0], "")
	if err != nil {
		return nil, err
	}
	s.stages[0] = first
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i := 1; i < len(all); i++ {
		wg.Go(func() {
			var st *procStage
			if st, _, errs[i] = start(all[i], boot); errs[i] == nil {
				s.stages[i] = st
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return dht.WithBootstrap(boot), nil
}

// serveProc is one `strata serve` process.
type serveProc struct {
	cmd    *exec.Cmd
	stderr *tailBuffer
	addrs  chan string   // its first address, once printed
	done   chan struct{} // closed once it has exited and been waited for
	err    error         // how it exited, once done
}

func (p *serveProc) String() string {
	return fmt.Sprintf("strata serve (pid %d, %s)", p.cmd.Process.Pid, strings.Join(p.cmd.Args[1:], " "))
}

// startServe starts bin with args; its stdout is read for the "addr "
// lines serve prints, its stderr kept for errors. On Linux the process
// is killed if this one dies.
func startServe(bin string, args []string) (*serveProc, error) {
	cmd := exec.Command(bin, args...)
	killWithParent(cmd)
	p := &serveProc{cmd: cmd, stderr: &tailBuffer{}, addrs: make(chan string, 1), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s serve: %w", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				select {
				case p.addrs <- a:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// address waits for the process's first address, which must be on
// 127.0.0.1.
func (p *serveProc) address(ctx context.Context) (string, error) {
	t := time.NewTimer(serveStartTimeout)
	defer t.Stop()
	select {
	case a := <-p.addrs:
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") {
			return "", fmt.Errorf("bench: %s listens on %s, not on 127.0.0.1", p, a)
		}
		if _, err := ma.NewMultiaddr(a); err != nil {
			return "", fmt.Errorf("bench: %s printed address %q: %w", p, a, err)
		}
		return a, nil
	case <-p.done:
		return "", fmt.Errorf("bench: %s exited before serving: %v%s", p, p.err, p.tail())
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", fmt.Errorf("bench: %s printed no address within %v%s", p, serveStartTimeout, p.tail())
	}
}

// stop kills the process and waits for it.
func (p *serveProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("bench: kill %s: %w", p, err)
	}
	<-p.done
	return nil
}

// tail is the end of the process's stderr, for an error message.
func (p *serveProc) tail() string {
	if t := strings.TrimSpace(p.stderr.String()); t != "" {
		return "\nits stderr:\n" + t
	}
	return ""
}

// tailBuffer keeps the last tailBytes written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

const tailBytes = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailBytes {
		t.b = append(t.b[:0], t.b[len(t.b)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
