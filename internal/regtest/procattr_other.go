//go:build unix && !linux

package regtest

import "syscall"

// procAttr puts each child in its own process group, so a Ctrl-C in the
// terminal reaches only the harness, which then stops the nodes in order.
// Without Linux's Pdeathsig, a harness that dies without Stop orphans them.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
