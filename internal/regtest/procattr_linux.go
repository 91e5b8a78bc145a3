package regtest

import "syscall"

// procAttr puts each child in its own process group, so a Ctrl-C in the
// terminal reaches only the harness, which then stops the nodes in order;
// and asks the kernel to kill the child if the harness dies without Stop
// (a test binary killed by its timeout), so no lnd or btcd is orphaned.
// Pdeathsig fires when the forking OS thread exits; Go only retires threads
// of goroutines that exit while locked to them, which this package never does.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
