package gossip

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinLoop keeps the node in one ring:
//   - while alone it tries every seed, backing off from minBackoff to the
//     rejoin interval;
//   - otherwise, every rejoin interval, it joins members it holds dead (a
//     healed partition merges back; memberlist alone never re-contacts a
//     dead node) and seeds that are not members;
//   - every pass it pulls the state of members whose set or meta this node
//     holds older than they advertise (a lost broadcast, see pinger),
//     instead of waiting for memberlist's push-pull.
func (r *Ring) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	backoff := r.timing.minBackoff
	nextJoin := time.Now()
	wasAlone := false
	var lastWarn time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if now := time.Now(); !now.Before(nextJoin) {
			targets := r.rejoinTargets(ml, now)
			aloneBefore := r.numAlive.Load() <= 1
			joined, failed := joinAll(ml, targets, r.log.Debug)
			r.noteJoins(aloneBefore && len(targets) > 0, joined, failed)
			alone := r.numAlive.Load() <= 1
			switch {
			case alone && len(targets) > 0:
				// Warn once the backoff is at its cap, then once a minute.
				if backoff >= r.timing.rejoin && now.Sub(lastWarn) >= time.Minute {
					lastWarn = now
					r.log.Warn("gossip: no seed or peer reachable; retrying", "node", r.cfg.NodeName, "tried", targets, "every", r.timing.rejoin)
				}
				nextJoin = now.Add(jitter(backoff))
				backoff = min(2*backoff, r.timing.rejoin)
			default:
				if wasAlone && !alone {
					r.log.Info("gossip joined the ring", "node", r.cfg.NodeName, "via", joined)
				}
				backoff = r.timing.minBackoff
				nextJoin = now.Add(jitter(r.timing.rejoin))
			}
			wasAlone = alone
		}
		_, _ = joinAll(ml, r.staleTargets(time.Now()), r.log.Debug)
		timer.Reset(max(0, min(time.Until(nextJoin), r.timing.staleRepair)))
	}
}

// rejoinTargets lists addresses to join: dead members within the reconnect
// window, and seeds (all of them while alone, else those that are literal
// addresses of no alive member). It also forgets members dead or left for
// longer than the reconnect window.
func (r *Ring) rejoinTargets(ml *memberlist.Memberlist, now time.Time) []string {
	self := r.self
	var targets []string
	alive := make(map[netip.AddrPort]bool)
	r.mu.Lock()
	for name, e := range r.members {
		switch {
		case !e.known:
			// A set learned by push-pull for a node memberlist never
			// reported (already reaped): forget it after a while.
			if e.since.IsZero() {
				e.since = now
			} else if now.Sub(e.since) > 10*r.timing.rejoin {
				delete(r.members, name)
			}
		case e.state == StateAlive:
			alive[e.addr] = true
		case now.Sub(e.since) > r.timing.reconnect:
			delete(r.members, name)
		case e.state == StateDead && e.addr.IsValid() && e.addr != self:
			targets = append(targets, e.addr.String())
		}
	}
	alone := r.numAlive.Load() <= 1
	seeds := r.cfg.Join // replaced, never modified, by SetJoin
	r.mu.Unlock()
	for _, s := range seeds {
		ap, err := netip.ParseAddrPort(s)
		if err == nil {
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			if ap == self || (!alone && alive[ap]) {
				continue
			}
		} else if !alone {
			// A host name: only needed while alone.
			continue
		}
		targets = append(targets, s)
	}
	slices.Sort(targets)
	return slices.Compact(targets)
}

// staleTargets lists alive members this node has lagged (entry.lagging)
// for staleRepair; joining one is a push-pull with it, which brings both
// its meta and its set. The wait lets broadcasts still in flight land.
func (r *Ring) staleTargets(now time.Time) []string {
	var targets, names []string
	r.mu.Lock()
	for name, e := range r.members {
		if !e.known || name == r.cfg.NodeName || e.state != StateAlive || !e.lagging() {
			e.staleSince = time.Time{}
			continue
		}
		switch {
		case e.staleSince.IsZero():
			e.staleSince = now
		case now.Sub(e.staleSince) >= r.timing.staleRepair:
			e.staleSince = now
			targets = append(targets, e.addr.String())
			names = append(names, name)
		}
	}
	r.mu.Unlock()
	if len(names) > 0 {
		slices.Sort(names)
		r.log.Debug("gossip state of members lags what they advertise; pulling it", "node", r.cfg.NodeName, "peers", names)
	}
	return targets
}

// joinAll joins each target on its own goroutine (a dead address costs a
// TCP timeout) and returns those that answered, and why the others did not.
func joinAll(ml *memberlist.Memberlist, targets []string, debug func(string, ...any)) ([]string, map[string]error) {
	if len(targets) == 0 {
		return nil, nil
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards ok and failed
		ok     []string
		failed = map[string]error{}
	)
	for _, t := range targets {
		wg.Go(func() {
			if _, err := ml.Join([]string{t}); err != nil {
				debug("gossip join failed", "peer", t, "err", err)
				mu.Lock()
				failed[t] = err
				mu.Unlock()
				return
			}
			mu.Lock()
			ok = append(ok, t)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(ok)
	return ok, failed
}

// jitter spreads d by ±20% so that nodes do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}
