package kubeapi

import "syscall"

// sysProcAttr has the kernel SIGKILL a child when the test binary dies
// before it could stop it (a panic, a timeout, `go test` killed), so no
// apiserver outlives its test. Pdeathsig fires when the forking OS thread
// ends, not the process; Go ends a thread only when a goroutine locked to it
// exits, and the goroutines that start processes here are never locked.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
