//go:build unix && !linux

package proc

import "syscall"

// procAttr puts each child in its own process group, so a Ctrl-C in the
// terminal reaches only the harness, which then stops its children in order.
// Without Linux's Pdeathsig, a harness that dies without stopping them
// orphans them.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
