//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/caller"
	"lightning-service/internal/faultproxy"
	"lightning-service/internal/regtest"
)

// The RPCs a payment's fate hangs on: the methods tests break on the proxy.
const (
	sendPayment  = "/routerrpc.Router/SendPaymentV2"
	trackPayment = "/routerrpc.Router/TrackPaymentV2"
)

// ownerSettings are read by the owner of payments (internal/payment): how
// long a worker waits for a payment's outcome before leaving the answer to
// the payment's owner, how long an owner's lease lasts, and how often work
// whose owner stopped is looked at. They are short so that hand-offs and
// takeovers happen within a test; a build without an owner ignores them.
var ownerSettings = map[string]string{
	"LIGHTNING_PAY_HANDOFF":       "2s",
	"LIGHTNING_PAYMENT_LEASE":     "3s",
	"LIGHTNING_RECOVERY_INTERVAL": "1s",
}

// startProxy starts a fault proxy before alice's lnd, closed when the test
// ends.
func startProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	alice := env.network.Alice
	p, err := faultproxy.Start(context.Background(), faultproxy.Options{
		Target: alice.RPCAddr, TLSCertPath: alice.TLSCertPath, TLSKeyPath: alice.TLSKeyPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// rig is a service of one test's own — its topics, consumer group and
// ledger — whose LND is alice behind a fault proxy. It runs in this process
// (start) or as processes the test kills and pauses (process).
type rig struct {
	endpoint
	proxy *faultproxy.Proxy
	tp    topics
	vars  map[string]string // the service's settings
	dir   string
}

// newRig prepares a rig; settings are added to the service's own.
func newRig(t *testing.T, settings map[string]string) *rig {
	t.Helper()
	ctx := t.Context()
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = fmt.Sprintf("%s-%x", name, time.Now().UnixNano()&0xffffff)
	tp := topics{in: name + "-in", out: name + "-out", dlq: name + "-dlq", group: name}
	if err := env.broker.CreateTopics(ctx, 4, tp.in, tp.out, tp.dlq); err != nil {
		t.Fatal(err)
	}
	r := &rig{proxy: startProxy(t), tp: tp, dir: t.TempDir()}
	var err error
	if r.vars, err = serviceVars(ctx, tp, r.dir, r.proxy.Addr()); err != nil {
		t.Fatal(err)
	}
	r.vars["LIGHTNING_KAFKA_SESSION_TIMEOUT"] = "6s"
	maps.Copy(r.vars, ownerSettings)
	maps.Copy(r.vars, settings)
	c, err := caller.New(ctx, []string{env.broker.Addr()}, tp.in, tp.out, []byte(hmacKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r.endpoint = endpoint{caller: c, logs: filepath.Join(r.dir, "service*.log")}
	t.Cleanup(func() { r.keepLogs(t) })
	return r
}

// keepLogs copies a failed test's service logs out of its temporary
// directory, which is about to go.
func (r *rig) keepLogs(t *testing.T) {
	if !t.Failed() {
		return
	}
	paths, _ := filepath.Glob(r.logs)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		kept := filepath.Join(os.TempDir(), r.tp.group+"-"+filepath.Base(p))
		if os.WriteFile(kept, b, 0o644) == nil {
			t.Logf("service log kept at %s", kept)
		}
	}
}

// start runs the service in this process until the test ends.
func (r *rig) start(t *testing.T) {
	t.Helper()
	stop, err := startInProcess(context.Background(), r.vars, filepath.Join(r.dir, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// process returns instance i of the service as its own process, not
// started yet, and killed when the test ends. Instances share the rig's
// ledger and its consumer group.
func (r *rig) process(t *testing.T, i int) *serviceProcess {
	t.Helper()
	p := &serviceProcess{bin: serviceBinary(t), logPath: filepath.Join(r.dir, fmt.Sprintf("service-%d.log", i)), env: processEnv(r.vars)}
	t.Cleanup(p.kill)
	return p
}

// admin is a Kafka admin client, closed when the test ends.
func admin(t *testing.T) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// waitMembers waits until the rig's group is stable with n members, each
// with partitions assigned.
func (r *rig) waitMembers(t *testing.T, n int) {
	t.Helper()
	adm := admin(t)
	eventually(t, time.Minute, fmt.Sprintf("%d members in group %s", n, r.tp.group), func() bool {
		gs, err := adm.DescribeGroups(t.Context(), r.tp.group)
		if err != nil {
			return false
		}
		g := gs[r.tp.group]
		return g.Err == nil && g.State == "Stable" && len(g.Members) == n
	})
}

// skipInput commits the end of every partition of the rig's input topic
// for its group, as an operator resetting the group's offsets to the latest
// would: what was delivered and not committed is never delivered again.
// The broker accepts it only from an empty group, so it waits for the
// session of a killed member to time out.
func (r *rig) skipInput(t *testing.T) {
	t.Helper()
	adm := admin(t)
	ends, err := adm.ListEndOffsets(t.Context(), r.tp.in)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the group's offsets reset to the end of its input", func() bool {
		return adm.CommitAllOffsets(t.Context(), r.tp.group, ends.Offsets()) == nil
	})
	ends.Each(func(o kadm.ListedOffset) {
		t.Logf("group %s committed at %s/%d offset %d", r.tp.group, o.Topic, o.Partition, o.Offset)
	})
}

// holdInvoice is an invoice of node's that, paid, stays accepted, its HTLC
// held, until the test settles it with preimage or cancels it. It is
// cancelled when the test ends, if it is still open.
type holdInvoice struct {
	node     *regtest.Node
	pr       string
	preimage []byte
	hash     []byte
	sats     int64
}

func newHoldInvoice(t *testing.T, node *regtest.Node, sats int64, memo string) *holdInvoice {
	t.Helper()
	h := &holdInvoice{node: node, preimage: make([]byte, 32), sats: sats}
	if _, err := io.ReadFull(rand.Reader, h.preimage); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(h.preimage)
	h.hash = sum[:]
	resp, err := node.Invoices.AddHoldInvoice(t.Context(), &invoicesrpc.AddHoldInvoiceRequest{Hash: h.hash, Value: sats, Memo: memo})
	if err != nil {
		t.Fatalf("%s: AddHoldInvoice: %v", node.Name, err)
	}
	h.pr = resp.PaymentRequest
	t.Cleanup(func() {
		_, _ = node.Invoices.CancelInvoice(context.Background(), &invoicesrpc.CancelInvoiceMsg{PaymentHash: h.hash})
	})
	return h
}

// state is the invoice's state on its node.
func (h *holdInvoice) state(t *testing.T) lnrpc.Invoice_InvoiceState {
	t.Helper()
	inv, err := h.node.Lightning.LookupInvoice(t.Context(), &lnrpc.PaymentHash{RHash: h.hash})
	if err != nil {
		t.Fatal(err)
	}
	return inv.State
}

// waitAccepted waits until a payment's HTLC is held for the invoice.
func (h *holdInvoice) waitAccepted(t *testing.T, d time.Duration) {
	t.Helper()
	eventually(t, d, fmt.Sprintf("%s to hold an HTLC for %x", h.node.Name, h.hash), func() bool {
		return h.state(t) == lnrpc.Invoice_ACCEPTED
	})
}

func (h *holdInvoice) settle(t *testing.T) {
	t.Helper()
	if _, err := h.node.Invoices.SettleInvoice(t.Context(), &invoicesrpc.SettleInvoiceMsg{Preimage: h.preimage}); err != nil {
		t.Fatalf("%s: SettleInvoice: %v", h.node.Name, err)
	}
}

func (h *holdInvoice) cancel(t *testing.T) {
	t.Helper()
	if _, err := h.node.Invoices.CancelInvoice(t.Context(), &invoicesrpc.CancelInvoiceMsg{PaymentHash: h.hash}); err != nil {
		t.Fatalf("%s: CancelInvoice: %v", h.node.Name, err)
	}
}

// wantPaidOnce checks against the nodes that receiver's invoice with hash
// was paid once: settled for its amount by one HTLC, and alice has one
// payment of the hash, succeeded by one HTLC, with the invoice's preimage.
func wantPaidOnce(t *testing.T, receiver *regtest.Node, hash []byte) {
	t.Helper()
	// An answer may come before LND has finished: give the payment time
	// to end.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ps := alicePayments(t, hash); len(ps) > 0 && ps[0].Status != lnrpc.Payment_IN_FLIGHT && ps[0].Status != lnrpc.Payment_INITIATED {
			break
		}
	}
	inv, err := receiver.Lightning.LookupInvoice(t.Context(), &lnrpc.PaymentHash{RHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	settled := 0
	for _, h := range inv.Htlcs {
		if h.State == lnrpc.InvoiceHTLCState_SETTLED {
			settled++
		}
	}
	if inv.State != lnrpc.Invoice_SETTLED || inv.AmtPaidSat != inv.Value || settled != 1 {
		t.Errorf("%s's invoice %x is %s with %d of %d sat paid in %d settled HTLCs; want settled once", receiver.Name, hash, inv.State, inv.AmtPaidSat, inv.Value, settled)
	}
	pmts := alicePayments(t, hash)
	if len(pmts) != 1 {
		t.Fatalf("alice has %d payments of %x, want 1", len(pmts), hash)
	}
	p, succeeded := pmts[0], 0
	for _, h := range p.Htlcs {
		if h.Status == lnrpc.HTLCAttempt_SUCCEEDED {
			succeeded++
		}
	}
	if p.Status != lnrpc.Payment_SUCCEEDED || succeeded != 1 || p.PaymentPreimage != hex.EncodeToString(inv.RPreimage) {
		t.Errorf("alice's payment of %x is %s with %d succeeded HTLCs, preimage %s (the invoice's: %x); want succeeded once", hash, p.Status, succeeded, p.PaymentPreimage, inv.RPreimage)
	}
}

// alicePayments returns alice's payments of hash, complete or not.
func alicePayments(t *testing.T, hash []byte) []*lnrpc.Payment {
	t.Helper()
	resp, err := env.network.Alice.Lightning.ListPayments(t.Context(), &lnrpc.ListPaymentsRequest{IncludeIncomplete: true, MaxPayments: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	var out []*lnrpc.Payment
	for _, p := range resp.Payments {
		if p.PaymentHash == hex.EncodeToString(hash) {
			out = append(out, p)
		}
	}
	return out
}

// sameAnswers checks that every result published so far for each of ids
// is the same bytes, and returns how many there were in all.
func (e endpoint) sameAnswers(t *testing.T, ids ...string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		rs := e.caller.Results(id)
		n += len(rs)
		for _, r := range rs[min(1, len(rs)):] {
			if !bytes.Equal(r.Record.Value, rs[0].Record.Value) {
				t.Errorf("request %s answered twice, differently:\n%s\n%s", id, rs[0].Raw, r.Raw)
			}
		}
	}
	return n
}

// outcome is a result's status, or its error code.
func outcome(t *testing.T, r *caller.Result) string {
	t.Helper()
	return resultData(t, r.Record.Value).outcome()
}
