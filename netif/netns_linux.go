//go:build linux

package netif

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// doInNetNS runs fn on an OS thread in namespace h (the caller's own
// namespace when h is not open). It enters h only when the thread is not
// there already: setns(2) needs CAP_SYS_ADMIN, which hostlbd, running in the
// namespace it opened its sockets in, neither has nor needs.
func doInNetNS(h netns.NsHandle, fn func() error) error {
	if !h.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine, so no caller's thread lock is disturbed.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if orig.Equal(h) {
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			// Otherwise the thread stays locked and dies with this
			// goroutine rather than run others in the wrong namespace.
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
