//go:build !linux

package kubeapi

import "syscall"

// sysProcAttr: only Linux has Pdeathsig; elsewhere children are stopped by
// Stop alone.
func sysProcAttr() *syscall.SysProcAttr { return nil }
