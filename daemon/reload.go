package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
)

// serveReloads applies one reload per request until ctx is done.
func (d *Daemon) serveReloads(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-d.opts.Reload:
			if !ok {
				<-ctx.Done()
				return nil
			}
			d.Reload()
		}
	}
}

// Reload re-reads the configuration. A file that fails to load or validate
// leaves the running configuration untouched and is logged with every
// problem; a good one replaces it: what can change live takes effect at
// once (through the reconcile loop), what cannot is logged as "needs
// restart" and keeps its running value until the next start.
//
// RELOADING=1 and READY=1 frame a reload only once start-up has sent its
// own READY=1: a SIGHUP during start-up still applies the file, but its
// READY=1 would tell systemd the unit started before the first full
// reconcile. announceReady sets d.ready only after its READY=1, so no
// reload's READY=1 can come first.
func (d *Daemon) Reload() { _, _ = d.ReloadNow() }

// ReloadResult is what a reload changed, as config.Changes names the keys:
// Changed took effect, NeedsRestart keep their running value until the
// next start.
type ReloadResult struct {
	Changed, NeedsRestart []string
}

// ErrNoConfigFile is returned by ReloadNow and CheckReload when the daemon
// was given no file to re-read (Options.Load is nil).
var ErrNoConfigFile = errors.New("no configuration file to re-read")

// ReloadNow is Reload for a caller that waits for the outcome (the control
// socket): it returns what changed, or why the file was refused and the
// running configuration kept. Reloads are serialised; each reads the file
// as it is when its turn comes.
func (d *Daemon) ReloadNow() (ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.Lock()
	started := d.ready
	d.mu.Unlock()
	if started {
		if err := d.notify.Reloading(); err != nil {
			d.log.Warn("sd_notify RELOADING", "err", err)
		}
		defer func() {
			if err := d.notify.Ready(); err != nil {
				d.log.Warn("sd_notify READY", "err", err)
			}
			d.status("")
		}()
	} else {
		d.log.Info("reload during start-up: applying the file; READY=1 still waits for the first full reconcile")
	}
	if d.opts.Load == nil {
		d.log.Warn("reload requested but no config file to re-read")
		return ReloadResult{}, ErrNoConfigFile
	}
	if started {
		d.status("reloading")
	}
	next, err := d.opts.Load()
	d.recordReload(err, time.Now())
	if err != nil {
		d.mu.Lock()
		d.reloadE = err
		d.mu.Unlock()
		// Each problem on its own line keeps file:line readable in the journal.
		d.log.Error("reload failed; keeping the running config",
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return ReloadResult{}, err
	}

	old := d.config()
	live, restart := config.Changes(old, next)
	effective := keepRestartOnly(old, next)
	if slices.Contains(live, "gossip.secret_key_file") && !d.applyKeys(effective.Gossip) {
		effective.Gossip.SecretKeyFile, effective.Gossip.SecretKeys = old.Gossip.SecretKeyFile, old.Gossip.SecretKeys
		live = slices.DeleteFunc(live, func(k string) bool { return k == "gossip.secret_key_file" })
	}
	d.mu.Lock()
	d.cfg = effective
	d.reloadE = nil
	d.mu.Unlock()
	if d.opts.LogLevel != nil {
		d.opts.LogLevel.Set(effective.Log.Level)
	}
	if len(restart) > 0 {
		d.log.Warn("config changes need a restart to take effect (systemctl restart hostlb)",
			"keys", strings.Join(restart, ","))
	}
	d.log.Info("config reloaded", "changed", strings.Join(live, ","), "node", effective.Node.Name)
	d.logUnserved(effective)
	for _, k := range live {
		if k == "vip" || strings.HasPrefix(k, "vip") {
			d.logVIPs(effective)
			break
		}
	}
	d.loop.Trigger("reload")
	return ReloadResult{Changed: live, NeedsRestart: restart}, nil
}

// CheckReload reads the configuration file as a reload would and says what
// a reload would change, or why it would refuse the file; it applies
// nothing. The file is the daemon's own (Options.Load), never one a caller
// names: the control socket's users must not make the daemon read, with
// its rights, a file they cannot.
func (d *Daemon) CheckReload() (ReloadResult, error) {
	if d.opts.Load == nil {
		return ReloadResult{}, ErrNoConfigFile
	}
	next, err := d.opts.Load()
	if err != nil {
		return ReloadResult{}, err
	}
	live, restart := config.Changes(d.config(), next)
	return ReloadResult{Changed: live, NeedsRestart: restart}, nil
}

// keySetter is a Ring whose keys change live (*gossip.Ring).
type keySetter interface {
	SetKeys(keys [][]byte) error
}

// applyKeys gives the running ring the key set of a changed key file (a
// step of a rolling rotation) and reports whether it took it.
func (d *Daemon) applyKeys(g config.Gossip) bool {
	if d.opts.Ring == nil {
		return true
	}
	ks, ok := d.opts.Ring.(keySetter)
	if !ok {
		d.log.Warn("this ring cannot change its keys live; restart to use the new key file", "file", g.SecretKeyFile)
		return false
	}
	if err := ks.SetKeys(g.SecretKeys); err != nil {
		d.log.Error("gossip keys not changed; keeping the running ones", "file", g.SecretKeyFile, "err", err)
		return false
	}
	if hb := d.opts.Heartbeat; hb != nil {
		// The same three passes as the ring's rotation keep every node
		// able to read every other's heartbeats.
		if err := hb.SetKeys(g.SecretKeys); err != nil {
			d.log.Error("heartbeat keys not changed; keeping the running ones", "file", g.SecretKeyFile, "err", err)
		}
	}
	return true
}

// keepRestartOnly returns next with the sections that cannot change in a
// running daemon taken from old, so the running config stays coherent:
// what runs is exactly what the log says runs.
func keepRestartOnly(old, next *config.Config) *config.Config {
	c := *next
	c.Node.Name = old.Node.Name
	c.Log.Format = old.Log.Format
	join := next.Gossip.Join // handed to the ring (SetJoin) by the next pass
	c.Gossip = old.Gossip
	c.Gossip.Join = join
	if next.Gossip.InsecurePlaintext == old.Gossip.InsecurePlaintext {
		// A new key set is applied live (Reload, applyKeys).
		c.Gossip.SecretKeyFile, c.Gossip.SecretKeys = next.Gossip.SecretKeyFile, next.Gossip.SecretKeys
	}
	c.Control = old.Control
	c.Metrics = old.Metrics
	c.BGP.ASN, c.BGP.RouterID, c.BGP.ListenPort = old.BGP.ASN, old.BGP.RouterID, old.BGP.ListenPort
	c.Kubernetes.Enabled = old.Kubernetes.Enabled
	c.Kubernetes.Kubeconfig = old.Kubernetes.Kubeconfig
	c.Kubernetes.LeaseNamespace = old.Kubernetes.LeaseNamespace
	return &c
}
