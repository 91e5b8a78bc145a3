package proc

import "syscall"

// procAttr puts each child in its own process group, so a Ctrl-C in the
// terminal reaches only the harness, which then stops its children in order;
// and asks the kernel to kill the child if the harness dies without stopping
// it (a test binary killed by its timeout), so nothing is orphaned.
// Pdeathsig fires when the forking OS thread exits; Go only retires threads
// of goroutines that exit while locked to them, which callers of Start must
// not do.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
