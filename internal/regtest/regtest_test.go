//go:build e2e

package regtest_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"

	"lightning-service/internal/regtest"
)

// Run with: go test -tags e2e -run . -v -count=1 ./internal/regtest/ -timeout 30m
// The first run builds lnd (about 9 minutes); later runs take about 20 seconds.
func TestNetwork(t *testing.T) {
	ctx := t.Context()

	began := time.Now()
	bins, err := regtest.Build(ctx, regtest.BuildOptions{Progress: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build: %s", time.Since(began).Round(time.Millisecond))

	// The network lives until netCtx ends; the last subtest checks that.
	netCtx, stopNet := context.WithCancel(ctx)
	defer stopNet()
	began = time.Now()
	n, err := regtest.Start(netCtx, regtest.Options{Binaries: bins, Progress: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start: %s", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	var desc strings.Builder
	n.Describe(&desc)
	t.Log("\n" + desc.String())

	t.Run("alice pays bob directly", func(t *testing.T) {
		pay(t, n.Alice, invoice(t, n.Bob, 10_000, false))
	})

	t.Run("alice pays carol through bob", func(t *testing.T) {
		p := pay(t, n.Alice, invoice(t, n.Carol, 20_000, false))
		if hops := len(p.Htlcs[len(p.Htlcs)-1].Route.Hops); hops != 2 {
			t.Errorf("route has %d hops, want 2", hops)
		}
	})

	t.Run("carol pays alice back", func(t *testing.T) {
		pay(t, n.Carol, invoice(t, n.Alice, 5_000, false))
	})

	t.Run("carol's private invoice has route hints", func(t *testing.T) {
		req := invoice(t, n.Carol, 30_000, true)
		dec, err := n.Alice.Lightning.DecodePayReq(ctx, &lnrpc.PayReqString{PayReq: req})
		if err != nil {
			t.Fatal(err)
		}
		if len(dec.RouteHints) == 0 {
			t.Fatal("private invoice has no route hints")
		}
		if got := dec.RouteHints[0].HopHints[0].NodeId; got != n.Bob.PubKey {
			t.Errorf("route hint enters at %s, want bob %s", got, n.Bob.PubKey)
		}
		pay(t, n.Alice, req)
	})

	t.Run("lncli and btcctl command lines work", func(t *testing.T) {
		out := run(t, append(n.Alice.LncliArgs(), "getinfo")...)
		var info struct {
			IdentityPubkey string `json:"identity_pubkey"`
		}
		if err := json.Unmarshal(out, &info); err != nil || info.IdentityPubkey != n.Alice.PubKey {
			t.Errorf("lncli getinfo: pubkey %q (want %s), err %v", info.IdentityPubkey, n.Alice.PubKey, err)
		}
		out = run(t, append(n.Btcd.BtcctlArgs(), "getblockcount")...)
		if h, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || h < 440 {
			t.Errorf("btcctl getblockcount = %s", out)
		}
	})

	t.Run("alice stops, is unreachable, restarts and pays again", func(t *testing.T) {
		began := time.Now()
		if err := n.StopNode(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		t.Logf("stop alice: %s", time.Since(began).Round(time.Millisecond))
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.Alice.Lightning.GetInfo(cctx, &lnrpc.GetInfoRequest{})
		cancel()
		if err == nil {
			t.Fatal("GetInfo on a stopped alice succeeded")
		}
		if err := n.StopNode(ctx, "alice"); err == nil {
			t.Error("stopping a stopped node succeeded")
		}
		// Bob notices: his channel with alice goes inactive.
		deadline := time.Now().Add(30 * time.Second)
		for bobSeesAliceActive(t, n) {
			if time.Now().After(deadline) {
				t.Fatal("bob still sees his channel with alice active 30s after alice stopped")
			}
			time.Sleep(100 * time.Millisecond)
		}

		began = time.Now()
		if err := n.StartNode(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		t.Logf("restart alice until her channels are active: %s", time.Since(began).Round(time.Millisecond))
		pay(t, n.Alice, invoice(t, n.Carol, 40_000, false))
		pay(t, n.Carol, invoice(t, n.Alice, 1_000, false))
	})

	t.Run("bob, the middle hop, stops and comes back", func(t *testing.T) {
		if err := n.StopNode(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		req := invoice(t, n.Carol, 2_000, false)
		if p := payStatus(t, n.Alice, req); p.Status != lnrpc.Payment_FAILED {
			t.Errorf("payment through a stopped bob: %s, want FAILED", p.Status)
		} else {
			t.Logf("payment through a stopped bob failed: %s", p.FailureReason)
		}
		began := time.Now()
		if err := n.StartNode(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		t.Logf("restart bob until his channels are active: %s", time.Since(began).Round(time.Millisecond))
		pay(t, n.Alice, req) // the same invoice: the failure left no trace that blocks it
	})

	t.Run("mine and fund", func(t *testing.T) {
		if err := n.Mine(ctx, 3); err != nil {
			t.Fatal(err)
		}
		before := walletBalance(t, n.Carol)
		if err := n.Fund(ctx, "carol", 1_000_000, 2_000_000); err != nil {
			t.Fatal(err)
		}
		if got := walletBalance(t, n.Carol) - before; got != 3_000_000 {
			t.Errorf("carol's balance grew by %d, want 3000000", got)
		}
	})

	t.Run("ending Start's ctx stops everything", func(t *testing.T) {
		stopNet()
		addrs := []string{n.Alice.RPCAddr, n.Bob.RPCAddr, n.Carol.RPCAddr, n.Btcd.RPCAddr}
		deadline := time.Now().Add(time.Minute)
		for _, addr := range addrs {
			for listening(addr) {
				if time.Now().After(deadline) {
					t.Fatalf("%s still accepts connections a minute after ctx ended", addr)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// Stop waits for the shutdown that ctx began and reports its result.
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if kids := childNodes(t); len(kids) > 0 {
			t.Errorf("processes left after Stop: %v", kids)
		}
		if _, err := os.Stat(n.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data directory %s still there after Stop (%v)", n.Dir, err)
		}
	})
}

func invoice(t *testing.T, nd *regtest.Node, sats int64, private bool) string {
	t.Helper()
	inv, err := nd.Lightning.AddInvoice(t.Context(), &lnrpc.Invoice{Value: sats, Private: private, Memo: t.Name()})
	if err != nil {
		t.Fatalf("%s addinvoice: %v", nd.Name, err)
	}
	return inv.PaymentRequest
}

// pay pays req from nd and fails the test unless the payment succeeds.
func pay(t *testing.T, nd *regtest.Node, req string) *lnrpc.Payment {
	t.Helper()
	began := time.Now()
	p := payStatus(t, nd, req)
	if p.Status != lnrpc.Payment_SUCCEEDED {
		t.Fatalf("%s's payment failed: %s", nd.Name, p.FailureReason)
	}
	t.Logf("%s paid %d sat in %s", nd.Name, p.ValueSat, time.Since(began).Round(time.Millisecond))
	return p
}

// payStatus pays req from nd and returns the final payment.
func payStatus(t *testing.T, nd *regtest.Node, req string) *lnrpc.Payment {
	t.Helper()
	stream, err := nd.Router.SendPaymentV2(t.Context(), &routerrpc.SendPaymentRequest{
		PaymentRequest: req, TimeoutSeconds: 30, FeeLimitSat: 1_000,
	})
	if err != nil {
		t.Fatalf("%s sendpayment: %v", nd.Name, err)
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s sendpayment: %v", nd.Name, err)
		}
		if p.Status == lnrpc.Payment_SUCCEEDED || p.Status == lnrpc.Payment_FAILED {
			return p
		}
	}
}

func bobSeesAliceActive(t *testing.T, n *regtest.Network) bool {
	t.Helper()
	chans, err := n.Bob.Lightning.ListChannels(t.Context(), &lnrpc.ListChannelsRequest{Peer: mustHex(t, n.Alice.PubKey)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chans.Channels {
		if c.Active {
			return true
		}
	}
	return false
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func walletBalance(t *testing.T, nd *regtest.Node) int64 {
	t.Helper()
	b, err := nd.Lightning.WalletBalance(t.Context(), &lnrpc.WalletBalanceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return b.ConfirmedBalance
}

func run(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// logWriter sends Build's and Start's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A Start that fails halfway must say why and leave no process or data
// behind.
func TestStartFailsCleanly(t *testing.T) {
	bins, err := regtest.Build(t.Context(), regtest.BuildOptions{Progress: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts regtest.Options
		want []string // in the error
	}{
		{"lnd refuses its flags", regtest.Options{LndArgs: []string{"--no-such-flag"}}, []string{"exited", "lnd.log", "no-such-flag"}},
		{"timeout", regtest.Options{Timeout: 2 * time.Second}, []string{"Options.Timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.opts.Binaries, tc.opts.Dir = bins, dir
			_, err := regtest.Start(t.Context(), tc.opts)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			t.Logf("Start's error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if kids := childNodes(t); len(kids) > 0 {
				t.Errorf("processes left after a failed Start: %v", kids)
			}
			if left, _ := os.ReadDir(dir); len(left) > 0 {
				t.Errorf("data left in %s after a failed Start: %v", dir, left)
			}
		})
	}
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// childNodes lists this process's children named lnd or btcd (Linux only:
// it reads /proc).
func childNodes(t *testing.T) []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid …
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < 0 {
			continue
		}
		comm, rest := s[open+1:closing], strings.Fields(s[closing+1:])
		if len(rest) > 1 && rest[1] == strconv.Itoa(os.Getpid()) && (comm == "lnd" || comm == "btcd") {
			kids = append(kids, strings.TrimSpace(s[:open])+" "+comm)
		}
	}
	return kids
}
