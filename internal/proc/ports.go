package proc

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct free ports on 127.0.0.1. All listeners stay
// open until the last is chosen, so the ports differ from each other; another
// program may still take one before the child binds it, which callers handle
// by starting again on other ports (see Process.AddrInUse).
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
