package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
)

// Leave hands every session to a successor serving the same blocks (found
// in the DHT, same numerics profile), KV cache included, tells each
// session's owner where it went ([Moved]), and then closes the server. A
// session for which no successor takes it is dropped with an error to its
// owner, who then replays it elsewhere. New sessions are refused from the
// start of Leave. It returns how many sessions moved.
func (s *Server) Leave(ctx context.Context) (int, error) {
	s.mu.Lock()
	s.leaving = true
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	moved := 0
	var errs []error
	for _, ss := range all {
		if err := s.migrate(ctx, ss); err != nil {
			errs = append(errs, fmt.Errorf("session %x: %w", ss.id[:4], err))
			s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeInternal, Message: toValidUTF8("server left without a successor: " + err.Error())})
			s.drop(ss, true)
			continue
		}
		moved++
	}
	// Each owner closes its stream once it has read where its session
	// went; wait for that (or a while) so the news is not lost with the
	// connection.
	wait := time.NewTimer(min(s.cfg.StreamTimeout, 5*time.Second))
	defer wait.Stop()
	for _, ss := range all {
		select {
		case <-ss.done:
		case <-wait.C:
		case <-ctx.Done():
		}
	}
	return moved, errors.Join(append(errs, s.Close())...)
}

// successors lists peers that serve all of span with this server's
// profile, least loaded first.
func (s *Server) successors(ctx context.Context, span dht.Span) ([]dht.Info, []peer.ID) {
	provs, err := s.node.FindProviders(ctx, s.cfg.Model, span.Start)
	if err != nil {
		s.logf("no successors", "err", err)
		return nil, nil
	}
	var infos []dht.Info
	var ids []peer.ID
	for _, p := range provs {
		if p.ID == s.node.ID() {
			continue
		}
		s.node.ForgetInfo(p.ID)
		in, err := s.node.Info(ctx, p.ID)
		if err != nil || in.Span.Start > span.Start || in.Span.End < span.End || in.Profile != s.cfg.Profile {
			continue
		}
		infos, ids = append(infos, in), append(ids, p.ID)
	}
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if d := infos[a].ActiveSessions - infos[b].ActiveSessions; d != 0 {
			return int(d)
		}
		return -compareFloat(infos[a].Throughput, infos[b].Throughput)
	})
	oi, op := make([]dht.Info, len(idx)), make([]peer.ID, len(idx))
	for i, j := range idx {
		oi[i], op[i] = infos[j], ids[j]
	}
	return oi, op
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// migrate moves one session. It holds the session's lock throughout, so
// no step runs while its KV cache is in flight; steps that arrive later
// find it moved.
func (s *Server) migrate(ctx context.Context, ss *session) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return nil
	}
	infos, ids := s.successors(ctx, ss.open.Span)
	if len(ids) == 0 {
		return fmt.Errorf("no other server holds blocks %s", ss.open.Span)
	}
	kv, err := ss.sh.ExportKV()
	if err != nil {
		return err
	}
	m := &Migrate{Open: ss.open, Owner: ss.owner.String(), Len: ss.sh.Len(), NextSeq: ss.nextSeq,
		History: ss.history, KVBytes: int64(len(kv))}
	var errs []error
	for i, p := range ids {
		s.node.Host().Peerstore().AddAddrs(p, infos[i].Addrs, 10*time.Minute)
		if err := s.handOver(ctx, p, m, kv); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		addrs := make([]string, 0, len(infos[i].Addrs))
		for _, a := range infos[i].Addrs {
			if len(addrs) < MaxNextHops {
				addrs = append(addrs, a.String())
			}
		}
		ss.closed, ss.moved = true, true
		ss.sh.Close()
		s.mu.Lock()
		s.stats.MigratedOut++
		s.mu.Unlock()
		if c := ss.ctl; c != nil {
			s.send(c, &Moved{SessionID: ss.id, Peer: p.String(), Addrs: addrs})
			c.mu.Lock()
			_ = c.s.CloseWrite()
			c.mu.Unlock()
		}
		return nil
	}
	return errors.Join(errs...)
}

// handOver sends a session to p and waits for it to be accepted.
func (s *Server) handOver(ctx context.Context, p peer.ID, m *Migrate, kv []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StreamTimeout)
	defer cancel()
	st, err := s.node.Host().NewStream(ctx, p, MigrateProtocol)
	if err != nil {
		return err
	}
	st = s.cfg.Link.Wrap(st)
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	if err := WriteFrame(st, m, s.cfg.MaxActivationBytes); err != nil {
		_ = st.Reset()
		return err
	}
	if _, err := st.Write(kv); err != nil {
		_ = st.Reset()
		return err
	}
	f, err := ReadFrame(st, s.cfg.MaxActivationBytes)
	if err != nil {
		_ = st.Reset()
		return err
	}
	_ = st.Close()
	switch f := f.(type) {
	case *Ready:
		if f.SessionID != m.SessionID || f.Len != m.Len {
			return fmt.Errorf("successor answered for session %x with %d positions", f.SessionID[:4], f.Len)
		}
		return nil
	case *Error:
		return fmt.Errorf("successor refused: %s (code %d)", f.Message, f.Code)
	}
	return fmt.Errorf("successor answered %v", f.Kind())
}

// handleMigrate receives a session from a leaving server.
func (s *Server) handleMigrate(st network.Stream) {
	st = s.cfg.Link.Wrap(st)
	f, release, err := s.readFrame(st)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.reject(st, SessionID{}, codeOf(err), err)
		} else {
			_ = st.Reset()
		}
		return
	}
	release()
	m, ok := f.(*Migrate)
	if !ok {
		s.reject(st, SessionID{}, CodeBadFrame, fmt.Errorf("%w: a migration starts with migrate, not %v", ErrFrame, f.Kind()))
		return
	}
	ss, code, err := s.receive(st, m)
	if err != nil {
		s.reject(st, m.SessionID, code, err)
		return
	}
	if err := s.writeFrame(st, &Ready{SessionID: ss.id, Len: m.Len}); err != nil {
		s.drop(ss, true)
		return
	}
	_ = st.Close()
}

// receive checks a migration, makes the session and imports its KV cache.
func (s *Server) receive(st network.Stream, m *Migrate) (*session, ErrorCode, error) {
	sp := s.shard.Span()
	switch {
	case m.Model != s.cfg.Model:
		return nil, CodeWrongModel, fmt.Errorf("model %s is not served here", m.Model)
	case m.Span.Start < sp.Start || m.Span.End > sp.End:
		return nil, CodeSpan, fmt.Errorf("blocks %s are not served here (this server has %s)", m.Span, sp)
	}
	owner, err := peer.Decode(m.Owner)
	if err != nil {
		return nil, CodeBadFrame, fmt.Errorf("owner %q: %v", m.Owner, err)
	}
	var upstream peer.ID
	if m.Upstream != "" {
		if upstream, err = peer.Decode(m.Upstream); err != nil {
			return nil, CodeBadFrame, fmt.Errorf("upstream %q: %v", m.Upstream, err)
		}
	}
	if _, err := nextHop(m.NextHops); err != nil {
		return nil, CodeBadFrame, err
	}
	ss, code, err := s.admit(owner, &m.Open, upstream, nil)
	if err != nil {
		return nil, code, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	fail := func(code ErrorCode, err error) (*session, ErrorCode, error) {
		ss.mu.Unlock()
		s.drop(ss, true)
		ss.mu.Lock()
		return nil, code, err
	}
	if m.KVBytes > 24+ss.sh.KVBytes() {
		return fail(CodeBadFrame, fmt.Errorf("KV export of %d bytes for a session of at most %d", m.KVBytes, 24+ss.sh.KVBytes()))
	}
	kv := make([]byte, m.KVBytes)
	_ = st.SetReadDeadline(time.Now().Add(s.cfg.StreamTimeout))
	if _, err := io.ReadFull(st, kv); err != nil {
		return fail(CodeBadFrame, fmt.Errorf("KV export truncated: %v", err))
	}
	if err := ss.sh.ImportKV(kv); err != nil {
		return fail(CodeBadFrame, err)
	}
	if ss.sh.Len() != m.Len {
		return fail(CodeBadFrame, fmt.Errorf("KV export of %d positions, migrate says %d", ss.sh.Len(), m.Len))
	}
	ss.nextSeq, ss.history, ss.last = m.NextSeq, m.History, time.Now()
	s.mu.Lock()
	s.stats.MigratedIn++
	s.mu.Unlock()
	return ss, 0, nil
}
