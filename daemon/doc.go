// Package daemon is the composition root of hostlbd: it owns the running
// configuration, the reconcile loop and the lifetime of every component.
//
// Lifecycle: New is inert; Run starts the components in order (reconcile
// loop first), sends READY=1 after the first full reconcile, serves reload
// requests (SIGHUP, delivered by main) and, when its context is cancelled
// (SIGTERM/SIGINT), sends STOPPING=1 and stops the components one at a time
// in reverse order within a bounded drain time. Only main touches signals.
package daemon
