// Package daemon is the composition root of hostlbd: it owns the running
// configuration, the reconcile loop and the lifetime of every component.
//
// Lifecycle: New is inert; Run starts the components in order (reconcile
// loop first), sends READY=1 after the first full reconcile, serves reload
// requests (SIGHUP, delivered by main) and, when its context is cancelled
// (SIGTERM/SIGINT), sends STOPPING=1 and stops the components one at a time
// in reverse order within a bounded drain time. Only main touches signals.
//
// L2 (Options.Links, Options.L2): the netlink Monitor runs first and the
// first pass waits for its first dump, so READY=1 follows a pass that saw
// the real interfaces. Every pass hands the L2 output the whole desired L2
// set with the current links (level-triggered: a link event alone moves
// announcements). READY=1 follows the first pass that ran to its end even
// if an output failed (the loop retries; STATUS and the journal say so),
// so a host that cannot set the ARP sysctls still serves what it can. On
// stop the L2 output is closed after the loop: every responder stops and
// every local address is removed.
//
// Health checks (health.go): a static VIP with `health` is announced only
// while its TCP check passes; it starts unhealthy until the first success,
// and every change of state triggers a pass.
package daemon
