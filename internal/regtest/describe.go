package regtest

import (
	"fmt"
	"io"
	"strings"
)

// Describe writes how to reach each part of the network by hand: the
// commands a newcomer pastes to poke at the nodes.
func (n *Network) Describe(w io.Writer) {
	fmt.Fprintf(w, "regtest network in %s\n\n", n.Dir)
	fmt.Fprintf(w, "btcd    rpc %s, log %s\n", n.Btcd.RPCAddr, n.Btcd.LogPath)
	fmt.Fprintf(w, "        %s getblockcount\n\n", shellJoin(n.Btcd.BtcctlArgs()))
	for _, nd := range n.nodes {
		fmt.Fprintf(w, "%-7s rpc %s, p2p %s, pubkey %s\n", nd.Name, nd.RPCAddr, nd.P2PAddr, nd.PubKey)
		fmt.Fprintf(w, "        log %s\n", nd.LogPath)
		fmt.Fprintf(w, "        %s getinfo\n\n", shellJoin(nd.LncliArgs()))
	}
	fmt.Fprintln(w, "channels")
	for _, c := range n.Channels {
		kind := "public"
		if c.Private {
			kind = "private"
		}
		fmt.Fprintf(w, "  %-5s → %-5s %-7s %11d sat, %d pushed, %s\n", c.From, c.To, kind, c.CapacitySats, c.PushSats, c.ChannelPoint)
	}
}

// shellJoin quotes the arguments that a POSIX shell would split or expand.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+", r))
		}) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
