package heartbeat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"time"
)

// receiveLoop reads datagrams and declares losses. Both happen on this one
// goroutine, and a loss only after a sweep of the socket: a timer-woken
// checker of its own would run ahead of a receiver that the Go scheduler
// left in its run queue (the netpoller readies goroutines behind the
// running ones, timers in front), and would take datagrams sitting unread
// in the socket buffer for the sender's silence. So when the next deadline
// passes, the loop first reads for sweepWindow more and only then checks.
//
// A wake-up more than an Interval past its deadline means this node was
// stalled itself (the whole host, or the process, did not run): then it
// holds its verdict for one more Interval, so that senders stalled with it
// (other processes of a paused VM; in tests, the other Hearts of the
// process) can send the round they owe. A sender on another host was not
// stalled; its datagrams are in the socket, and the sweep reads them
// anyway. Holds are at least a loss timeout apart, so a receiver that is
// late all the time still declares losses.
func (h *Heart) receiveLoop(conn net.PacketConn) {
	buf := make([]byte, readBuffer)
	var (
		sweepUntil time.Time // non-zero: sweeping before a check
		holdUntil  time.Time // no verdict before this (after a stall)
	)
	holdGap := time.Duration(h.misses) * h.interval
	for {
		h.dirty.Store(false)
		deadline := sweepUntil
		if deadline.IsZero() {
			deadline = h.nextCheck(time.Now())
			if deadline.Before(holdUntil) {
				deadline = holdUntil
			}
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A PacketConn without deadlines never declares a loss.
			// Real sockets have them.
			h.stats.logAggregated(h.log, slog.LevelError, "deadline", "heartbeat socket has no read deadline", "err", err)
		}
		if h.dirty.Load() && sweepUntil.IsZero() {
			continue // the watch set changed while the deadline was computed
		}
		n, from, err := conn.ReadFrom(buf)
		now := time.Now()
		switch {
		case err == nil:
			h.receive(buf[:n], from, now)
		case errors.Is(err, os.ErrDeadlineExceeded):
			if h.dirty.Load() && (sweepUntil.IsZero() || now.Before(sweepUntil)) {
				continue // woken by SetWatched, not by the deadline
			}
			if sweepUntil.IsZero() {
				if late := now.Sub(deadline); late > h.interval && now.After(holdUntil.Add(holdGap)) {
					holdUntil = now.Add(h.interval)
					h.log.Debug("heartbeat receiver was stalled; verdicts held", "late", late.Round(time.Millisecond))
					continue
				}
				sweepUntil = now.Add(sweepWindow)
				continue
			}
			sweepUntil = time.Time{}
			h.check(now)
		case errors.Is(err, net.ErrClosed):
			return
		default:
			h.stats.reject(h.log, slog.LevelWarn, RejectRead, "heartbeat read failed", "err", err)
		}
	}
}

// event is a callback to run once the lock is released.
type event struct {
	fn   func(string)
	node string
}

func (h *Heart) fire(evs []event) {
	for _, e := range evs {
		if e.fn != nil {
			e.fn(e.node)
		}
	}
}

// receive handles one datagram read at now from from.
func (h *Heart) receive(b []byte, from net.Addr, now time.Time) {
	hdr, m, err := h.keys.Load().open(b)
	if err != nil {
		h.rejectDecode(err, from, len(b))
		return
	}
	if m.node == h.cfg.Node {
		h.stats.reject(h.log, slog.LevelWarn, RejectSelf, "heartbeat with this node's own name: reflected, or two nodes share a name", "peer", from)
		return
	}
	evs := h.accept(hdr, m, from, now)
	h.fire(evs)
}

func (h *Heart) rejectDecode(err error, from net.Addr, size int) {
	kind, level := RejectMalformed, slog.LevelWarn
	switch {
	case errors.Is(err, errOversized):
		kind = RejectOversized
	case errors.Is(err, errShort):
		kind = RejectShort
	case errors.Is(err, errFormat):
		kind = RejectFormat
	case errors.Is(err, errDecrypt):
		kind = RejectDecrypt
	}
	h.stats.reject(h.log, level, kind, "heartbeat rejected", "peer", from, "bytes", size, "err", err)
}

// bootStart is the wall clock half of a boot ID, which orders a node's boots.
func bootStart(b bootID) uint64 { return binary.BigEndian.Uint64(b[:8]) }

// accept applies an authenticated datagram: replay and staleness checks,
// then liveness. It returns the callbacks to run.
func (h *Heart) accept(hdr header, m beat, from net.Addr, now time.Time) []event {
	recvClock := now.Sub(h.start)
	offset := recvClock - m.sent
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peers[m.node]
	switch {
	case p == nil:
		if len(h.peers) >= maxPeers {
			h.stats.reject(h.log, slog.LevelWarn, RejectPeersFull, "heartbeat from one sender too many", "peer", from, "sender", m.node)
			return nil
		}
		p = &peer{boot: hdr.boot, base: offset, baseAt: recvClock}
		h.peers[m.node] = p
	case p.boot != hdr.boot:
		// A restart has a later boot. An earlier one is a replay, unless
		// the current boot has been silent so long that the sender may
		// have restarted with its clock set back.
		if bootStart(hdr.boot) < bootStart(p.boot) || (bootStart(hdr.boot) == bootStart(p.boot) && bytes.Compare(hdr.boot[8:], p.boot[8:]) < 0) {
			if !p.heard.IsZero() && now.Sub(p.heard) < bootForget {
				h.stats.reject(h.log, slog.LevelDebug, RejectOldBoot, "heartbeat from an earlier boot", "peer", from, "sender", m.node)
				return nil
			}
		}
		p.boot, p.seq, p.base, p.baseAt = hdr.boot, 0, offset, recvClock
	}
	if hdr.seq <= p.seq {
		h.stats.reject(h.log, slog.LevelDebug, RejectReplay, "heartbeat replayed or reordered", "peer", from, "sender", m.node, "seq", hdr.seq, "last", p.seq)
		return nil
	}
	p.seq = hdr.seq
	// The fastest delivery so far is the base; it may rise by 1/64 of the
	// time passed (the two clocks drift, the path changes), so a lasting
	// change of delay is absorbed within 64 times its size.
	p.base = min(p.base+(recvClock-p.baseAt)/64, offset)
	p.baseAt = recvClock
	if late := offset - p.base; late > h.staleAfter {
		h.stats.reject(h.log, slog.LevelDebug, RejectStale, "heartbeat read late", "peer", from, "sender", m.node, "late", late)
		return nil
	}
	h.stats.received.Add(1)
	prev := p.heard
	p.heard, p.interval, p.from = now, m.interval, from
	var evs []event
	if m.flags&flagWatching != 0 {
		// Refreshed every watchRefreshTicks of the sender's intervals.
		p.asksUntil = now.Add(requestTTLRefreshes * watchRefreshTicks * m.interval)
		h.requesters[m.node] = p
	}
	if accusing := m.flags&flagLost != 0; accusing != p.accusing {
		p.accusing = accusing
		if accusing {
			h.log.Info("heartbeat: an heir declared this node lost", "peer", m.node)
			evs = append(evs, event{fn: h.cfg.OnAccused, node: m.node})
		}
	}
	w := h.watched[m.node]
	if w == nil {
		return evs
	}
	switch w.state {
	case Alive:
		h.stats.noteGap(now.Sub(prev))
	case Pending:
		w.state, w.since = Alive, now
	case Lost:
		h.stats.resumes.Add(1)
		h.log.Info("heartbeat resumed", "peer", m.node, "lost_for", now.Sub(w.since).Round(time.Millisecond))
		w.state, w.since = Alive, now
		evs = append(evs, event{fn: h.cfg.OnResume, node: m.node})
	}
	return evs
}

// nextCheck returns when the next watched node would be lost if nothing
// arrives, at most idleCheck away.
func (h *Heart) nextCheck(now time.Time) time.Time {
	next := now.Add(idleCheck)
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, w := range h.watched {
		if w.state != Alive {
			continue
		}
		p := h.peers[name] // never nil: Alive means heard, and a watched peer is kept
		if p == nil {
			continue
		}
		if d := p.heard.Add(h.timeout(p)); d.Before(next) {
			next = d
		}
	}
	return next
}

// check declares lost every alive watched node silent for longer than its
// timeout, and forgets idle senders.
func (h *Heart) check(now time.Time) {
	var evs []event
	h.mu.Lock()
	for name, w := range h.watched {
		if w.state != Alive {
			continue
		}
		p := h.peers[name]
		if p == nil {
			continue
		}
		if silent := now.Sub(p.heard); silent > h.timeout(p) {
			// Tell it at once (flagLost): alive after all, it re-announces.
			w.state, w.since, w.nextWatch = Lost, now, now
			h.stats.losses.Add(1)
			h.log.Info("heartbeat lost", "peer", name, "silent", silent.Round(time.Millisecond))
			evs = append(evs, event{fn: h.cfg.OnLoss, node: name})
		}
	}
	for name, p := range h.peers {
		_, watched := h.watched[name]
		_, asking := h.requesters[name]
		if !watched && !asking && now.Sub(p.heard) > peerForget {
			delete(h.peers, name)
		}
	}
	h.mu.Unlock()
	if len(evs) > 0 {
		select {
		case h.accuse <- struct{}{}:
		default: // the sender has a wake-up pending
		}
	}
	h.fire(evs)
}
