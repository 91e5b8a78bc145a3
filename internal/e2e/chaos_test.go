//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"

	"lightning-service/internal/faultproxy"
	"lightning-service/internal/ledger"
	"lightning-service/internal/ledger/ledgertest"
	"lightning-service/internal/regtest"
	"lightning-service/internal/wire"
)

// chaosPlan is one run of the chaos harness: the service as separate
// processes on topics and a group of their own (apart from the suite's
// service), a mix of requests, and what happens to everything meanwhile.
type chaosPlan struct {
	name        string // prefix of the topics, the group and the memos
	instances   int    // service processes in the group
	databaseURL string // the shared PostgreSQL ledger; "": SQLite (one instance)
	pays        int    // pays to distinct invoices; a fifth of them get a second request
	creates     int
	decodes     int
	bad         int // forged and as many stale records
	copies      int // copies sent at once, and as many replays sent 10 s or more later
	span        time.Duration
	events      []chaosEvent // at fixed moments; kills at random moments are added by kills
	kills       int          // SIGKILLs of instance 0, each restarted, at random moments in the span
	faults      int          // faults of the proxy between the service and alice, at random moments in the span
}

// chaosEvent is something the harness does at a moment of the run.
type chaosEvent struct {
	at   time.Duration
	what string // kill (instance 0, restarted), kill-for-good (the last instance), broker, alice, proxy (a fault)
}

func (p chaosPlan) in() string    { return p.name + "-in" }
func (p chaosPlan) out() string   { return p.name + "-out" }
func (p chaosPlan) dlq() string   { return p.name + "-dlq" }
func (p chaosPlan) group() string { return p.name }

// chaosReq is one request the test sends, and what it expects of it.
type chaosReq struct {
	kind    string // pay, pay-other, create, decode, forged, stale
	payload string
	task    string
	hash    string // pay: the invoice's payment hash
	memo    string // create: the invoice memo, unique per request
	value   []byte // set when first sent
	id      string
}

func (r *chaosReq) authentic() bool { return r.kind != "forged" && r.kind != "stale" }

// The service killed with SIGKILL at random moments, the broker restarted
// once and alice's lnd restarted once while payments are in flight, alice's
// answers lost, broken, delayed or cut off by the proxy before her, under
// several hundred mixed requests (pays to distinct invoices, a second request
// for some of them, creates, decodes, copies sent at once, replays sent
// later, forged and stale records). At the end every invariant of the ledger
// is counted, printed and asserted at zero.
func TestE2EChaos(t *testing.T) {
	runChaos(t, chaosPlan{
		name: "chaos", instances: 1,
		pays: 100, creates: 80, decodes: 60, bad: 10, copies: 30,
		span:   45 * time.Second,
		events: []chaosEvent{{18 * time.Second, "broker"}, {28 * time.Second, "alice"}},
		kills:  6,
		faults: 12,
	})
}

// Two instances in one consumer group sharing a PostgreSQL ledger; one is
// killed mid-stream and the other takes over its partitions, and the work it
// had in hand. The same invariants hold. It needs LIGHTNING_TEST_DATABASE_URL
// (scripts/test starts a throwaway cluster and sets it).
func TestE2EScaleOut(t *testing.T) {
	base := os.Getenv(ledgertest.DatabaseURLEnv)
	if base == "" {
		t.Skip("LIGHTNING_TEST_DATABASE_URL is not set; scripts/test sets it")
	}
	runChaos(t, chaosPlan{
		name: "scale", instances: 2, databaseURL: ledgertest.FreshSchema(t, base),
		pays: 60, creates: 40, decodes: 30, bad: 6, copies: 20,
		span:   30 * time.Second,
		events: []chaosEvent{{12 * time.Second, "kill-for-good"}},
	})
}

func runChaos(t *testing.T, plan chaosPlan) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	n := env.network
	var err error
	seed := time.Now().UnixNano()
	if v := os.Getenv("LIGHTNING_E2E_SEED"); v != "" { // to replay a run's plan
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("LIGHTNING_E2E_SEED: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	t.Logf("%s seed %d", plan.name, seed)
	chaosIn, chaosOut, chaosDLQ := plan.in(), plan.out(), plan.dlq()

	if err := env.broker.CreateTopics(ctx, 4, chaosIn, chaosOut, chaosDLQ); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := serviceBinary(t)
	proxy := startProxy(t)
	settings, err := serviceVars(ctx, topics{in: chaosIn, out: chaosOut, dlq: chaosDLQ, group: plan.group()}, dir, proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(settings, map[string]string{
		"LIGHTNING_KAFKA_SESSION_TIMEOUT": "6s",
		"LIGHTNING_DATABASE_URL":          plan.databaseURL,
		"LIGHTNING_RECOVERY_INTERVAL":     "2s",
		"LIGHTNING_PAYMENT_LEASE":         "4s",
		"LIGHTNING_PENDING_ALERT":         "20s",
		"LIGHTNING_NODE_RETRY_BUDGET":     "90s",
	})
	var procs []*serviceProcess
	for i := range plan.instances {
		vars := maps.Clone(settings)
		vars["LIGHTNING_DATA_DIR"] = filepath.Join(dir, fmt.Sprintf("ledger-%d", i))
		p := &serviceProcess{bin: bin, logPath: filepath.Join(n.Dir, fmt.Sprintf("%s-service-%d.log", plan.name, i)), env: processEnv(vars)}
		defer p.kill()
		t.Logf("service %d log: %s", i, p.logPath)
		procs = append(procs, p)
	}
	proc := procs[0]

	// The requests. Invoices are made up front; requests are signed when
	// sent.
	var reqs []*chaosReq
	addPay := func(kind string, node *regtest.Node, i int) *chaosReq {
		inv, err := node.AddInvoice(ctx, 1000+int64(i), fmt.Sprintf("chaos %s %d", kind, i), false)
		if err != nil {
			t.Fatal(err)
		}
		r := &chaosReq{kind: kind, task: "pay", payload: wire.PayPayload(inv.PaymentRequest), hash: hex.EncodeToString(inv.RHash)}
		reqs = append(reqs, r)
		return r
	}
	var pays []*chaosReq
	for i := range plan.pays {
		node := n.Bob
		if i%2 == 1 {
			node = n.Node("carol")
		}
		pays = append(pays, addPay("pay", node, i))
	}
	for i := range plan.pays / 5 { // another request for an invoice a pay above is for
		p := pays[i*5]
		reqs = append(reqs, &chaosReq{kind: "pay-other", task: "pay", payload: p.payload, hash: p.hash})
	}
	for i := range plan.creates {
		memo := fmt.Sprintf("%s-create-%d-%d", plan.name, seed, i)
		payload, err := wire.CreatePayload(100+int64(i), memo, 3600)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, &chaosReq{kind: "create", task: "create", payload: payload, memo: memo})
	}
	for range plan.decodes {
		p := pays[rng.IntN(len(pays))]
		reqs = append(reqs, &chaosReq{kind: "decode", task: "decode", payload: p.payload})
	}
	for i := range plan.bad { // forged and stale: pays for invoices no one else asks for, creates with memos of their own
		r := addPay("forged", n.Bob, 1000+i)
		r.kind = "forged"
		s := addPay("stale", n.Bob, 2000+i)
		s.kind = "stale"
		if i%2 == 0 {
			memo := fmt.Sprintf("%s-forged-%d-%d", plan.name, seed, i)
			payload, _ := wire.CreatePayload(100, memo, 3600)
			r.task, r.payload, r.memo, r.hash = "create", payload, memo, ""
			memo = fmt.Sprintf("%s-stale-%d-%d", plan.name, seed, i)
			payload, _ = wire.CreatePayload(100, memo, 3600)
			s.task, s.payload, s.memo, s.hash = "create", payload, memo, ""
		}
	}
	rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })

	// The sending schedule: the requests in 30 waves over the span; copies
	// sent at once with their original, replays sent 10 s or more later.
	type send struct {
		at   time.Duration
		req  *chaosReq
		copy bool
	}
	var sends []send
	const waves = 30
	span := plan.span
	for i, r := range reqs {
		sends = append(sends, send{at: time.Duration(i*waves/len(reqs)) * span / waves, req: r})
	}
	var authentic []*chaosReq
	for _, r := range reqs {
		if r.authentic() {
			authentic = append(authentic, r)
		}
	}
	base := len(sends)
	for i := range 2 * plan.copies {
		s := sends[rng.IntN(base)]
		for !s.req.authentic() {
			s = sends[rng.IntN(base)]
		}
		at := s.at + time.Millisecond
		if i >= plan.copies {
			at = s.at + 10*time.Second + time.Duration(rng.IntN(10_000))*time.Millisecond
		}
		sends = append(sends, send{at: at, req: s.req, copy: true})
	}
	sort.SliceStable(sends, func(i, j int) bool { return sends[i].at < sends[j].at })
	t.Logf("requests: %d distinct (%d authentic), %d sends in all (%d copies and replays)", len(reqs), len(authentic), len(sends), len(sends)-base)

	producer, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.RecordDeliveryTimeout(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	for _, p := range procs {
		p.start(t)
	}
	began := time.Now()
	var wg sync.WaitGroup
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, s := range sends {
			if d := time.Until(began.Add(s.at)); d > 0 {
				time.Sleep(d)
			}
			r := s.req
			if r.value == nil {
				key, ts := []byte(hmacKey), time.Now()
				switch r.kind {
				case "forged":
					key = []byte("not-the-key")
				case "stale":
					ts = ts.Add(-time.Hour)
				}
				r.value = wire.SignRequest(key, ts, r.task, r.payload)
				r.id = strings.ToLower(string(r.value[len(r.value)-wire.SignatureWidth:]))
			}
			pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			err := producer.ProduceSync(pctx, &kgo.Record{Topic: chaosIn, Key: []byte(r.kind), Value: r.value}).FirstErr()
			cancel()
			if err != nil {
				sendErr = err
				return
			}
		}
	}()

	// The chaos: SIGKILLs and proxy faults at random moments, the broker
	// restarted once, alice restarted once while payments are in flight.
	events := append([]chaosEvent(nil), plan.events...)
	for range plan.kills {
		events = append(events, chaosEvent{3*time.Second + time.Duration(rng.Int64N(int64(plan.span))), "kill"})
	}
	for range plan.faults {
		events = append(events, chaosEvent{time.Duration(rng.Int64N(int64(plan.span))), "proxy"})
	}
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	kills := 0
	for _, e := range events {
		if d := time.Until(began.Add(e.at)); d > 0 {
			time.Sleep(d)
		}
		switch e.what {
		case "kill":
			proc.kill()
			kills++
			t.Logf("%5.1fs: service SIGKILLed (%d)", time.Since(began).Seconds(), kills)
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			proc.start(t)
		case "kill-for-good":
			procs[len(procs)-1].kill()
			kills++
			t.Logf("%5.1fs: service %d SIGKILLed for good; the others take over", time.Since(began).Seconds(), len(procs)-1)
		case "broker":
			t.Logf("%5.1fs: restarting the broker", time.Since(began).Seconds())
			if err := env.broker.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		case "alice":
			t.Logf("%5.1fs: restarting alice's lnd with payments in flight", time.Since(began).Seconds())
			if err := n.StopNode(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if err := n.StartNode(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			t.Logf("%5.1fs: alice is back", time.Since(began).Seconds())
		case "proxy":
			t.Logf("%5.1fs: proxy: %s", time.Since(began).Seconds(), injectRandomFault(rng, proxy))
		}
	}
	wg.Wait()
	if sendErr != nil {
		t.Fatalf("sending: %v", sendErr)
	}
	t.Logf("%5.1fs: everything sent; waiting for every answer", time.Since(began).Seconds())

	// Every answer, on the output and dead-letter topics.
	results, dead := collect(t, ctx, plan, reqs, began)
	t.Logf("%5.1fs: answers collected", time.Since(began).Seconds())

	// The invariants.
	var (
		missing, disagree, forgedRun, doubleSuccess, payments, settledUnclaimed, createsDup, execDead int
		outcomes                                                                                      = map[string]int{}
	)
	successes := map[string]int{} // payment hash → requests answered success
	held := heldByLND(t, ctx)
	var heldReqs []*chaosReq // pays alice's LND holds in flight, left unanswered
	for _, r := range reqs {
		vals := results[r.id]
		if !r.authentic() {
			if len(vals) > 0 {
				forgedRun++
			}
			if !dead[r.id] {
				missing++
			}
			continue
		}
		if len(vals) == 0 && r.task == "pay" && held[r.hash] {
			heldReqs = append(heldReqs, r)
			continue
		}
		if len(vals) == 0 {
			missing++
			t.Logf("no result for %s request %s", r.kind, r.id)
			continue
		}
		for _, v := range vals[1:] {
			if !bytes.Equal(v, vals[0]) {
				disagree++
				t.Logf("results disagree for %s:\n%s\n%s", r.id, vals[0], v)
				break
			}
		}
		d := resultData(t, vals[0])
		outcomes[r.task+" "+d.outcome()]++
		if r.task == "pay" && d.Status == "success" {
			successes[r.hash]++
		}
	}
	for h, c := range successes {
		if c > 1 {
			doubleSuccess++
			t.Logf("invoice %s: %d requests answered success", h, c)
		}
	}

	// From the nodes: alice's payments, the receivers' settled invoices,
	// alice's invoices.
	pmts, err := n.Alice.Lightning.ListPayments(ctx, &lnrpc.ListPaymentsRequest{IncludeIncomplete: true, MaxPayments: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	succeeded := map[string]int{}
	for _, p := range pmts.Payments {
		if p.Status == lnrpc.Payment_SUCCEEDED {
			succeeded[p.PaymentHash]++
		}
	}
	for _, r := range reqs {
		if r.hash == "" || r.kind == "pay-other" {
			continue
		}
		if succeeded[r.hash] > 1 {
			payments++
		}
		settled := settledOn(t, ctx, n.Bob, r.hash) || settledOn(t, ctx, n.Node("carol"), r.hash)
		if !r.authentic() && settled {
			execDead++
		}
		if r.authentic() && settled && successes[r.hash] != 1 {
			settledUnclaimed++
			t.Logf("invoice %s settled, but %d requests answered success", r.hash, successes[r.hash])
		}
	}
	invs, err := n.Alice.Lightning.ListInvoices(ctx, &lnrpc.ListInvoiceRequest{NumMaxInvoices: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	memos := map[string]int{}
	for _, inv := range invs.Invoices {
		memos[inv.Memo]++
	}
	for _, r := range reqs {
		if r.memo == "" {
			continue
		}
		if r.authentic() && memos[r.memo] > 1 {
			createsDup++
		}
		if !r.authentic() && memos[r.memo] > 0 {
			execDead++
		}
	}

	runs := 0
	for _, p := range procs {
		runs += p.runs
	}
	t.Logf(plan.name+": %d requests sent (%d distinct) to %d instance(s); SIGKILLs %d, starts %d; events %s", len(sends), len(reqs), len(procs), kills, runs, describe(plan.events))
	t.Logf(plan.name+": outcomes %v", outcomes)
	unalerted := 0
	if len(heldReqs) > 0 {
		var logs strings.Builder
		for _, p := range procs {
			b, _ := os.ReadFile(p.logPath)
			logs.Write(b)
		}
		for _, r := range heldReqs {
			if !alerted(logs.String(), r.id) {
				unalerted++
				t.Logf("pay %s (payment %s) is held by LND and the service never alerted on it", r.id, r.hash)
			}
		}
	}
	t.Logf(plan.name+": requests without a result: %d", missing)
	t.Logf(plan.name+": pays left unanswered because alice's LND holds their payment in flight with no HTLC on a channel: %d, of which the service did not alert on: %d",
		len(heldReqs), unalerted)
	t.Logf(plan.name+": requests whose results disagree: %d", disagree)
	t.Logf(plan.name+": invoices more than one request was told it paid: %d", doubleSuccess)
	t.Logf(plan.name+": invoices alice paid more than once: %d", payments)
	t.Logf(plan.name+": invoices settled without exactly one request answered success: %d", settledUnclaimed)
	t.Logf(plan.name+": create requests that made more than one invoice: %d", createsDup)
	t.Logf(plan.name+": forged or stale requests answered: %d, executed: %d", forgedRun, execDead)
	if missing > 0 {
		explainMissing(t, ctx, plan, procs, dir, reqs, results, dead)
	}
	for name, v := range map[string]int{"without a result": missing, "held by LND without an alert": unalerted, "disagreeing": disagree, "told paid twice": doubleSuccess,
		"paid twice": payments, "settled unclaimed": settledUnclaimed, "creates duplicated": createsDup, "forged/stale answered": forgedRun, "forged/stale executed": execDead} {
		if v != 0 {
			t.Errorf("invariant %q: %d, want 0", name, v)
		}
	}
}

// collect reads the output and dead-letter topics until every request has
// its answer (authentic ones a result, the others a dead letter), then a few
// seconds more for late copies. It stops waiting earlier if, a minute into
// the run's end, the only requests left are pays whose payment alice's LND
// holds in flight with no HTLC on any channel: no answer can come for them
// until LND settles them.
func collect(t *testing.T, ctx context.Context, plan chaosPlan, reqs []*chaosReq, began time.Time) (map[string][][]byte, map[string]bool) {
	t.Helper()
	chaosOut, chaosDLQ := plan.out(), plan.dlq()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.ConsumeTopics(chaosOut, chaosDLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	results, dead := map[string][][]byte{}, map[string]bool{}
	unanswered := func() (left []*chaosReq) {
		for _, r := range reqs {
			if r.authentic() && len(results[r.id]) == 0 || !r.authentic() && !dead[r.id] {
				left = append(left, r)
			}
		}
		return left
	}
	answered := func() bool { return len(unanswered()) == 0 }
	onlyHeldByLND := func() bool {
		held := heldByLND(t, ctx)
		for _, r := range unanswered() {
			if r.task != "pay" || !held[r.hash] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(6 * time.Minute)
	var doneAt, heldChecked time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Topic == chaosDLQ {
				v := rec.Value
				if len(v) >= wire.SignatureWidth {
					dead[strings.ToLower(string(v[len(v)-wire.SignatureWidth:]))] = true
				}
				return
			}
			_, body, err := wire.OpenResult(rec.Value, []byte(hmacKey))
			if err != nil {
				t.Errorf("result that does not verify: %v: %s", err, rec.Value)
				return
			}
			var r struct {
				Data struct {
					RequestID string `json:"request_id"`
				} `json:"data"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				t.Errorf("result %s: %v", body, err)
				return
			}
			results[r.Data.RequestID] = append(results[r.Data.RequestID], rec.Value)
		})
		switch {
		case doneAt.IsZero() && answered():
			doneAt = time.Now()
		case !doneAt.IsZero() && time.Since(doneAt) > 5*time.Second:
			return results, dead
		case time.Now().After(deadline):
			t.Logf("gave up waiting for answers")
			return results, dead
		case doneAt.IsZero() && time.Since(began) > plan.span+time.Minute && time.Since(heldChecked) > 5*time.Second:
			heldChecked = time.Now()
			if onlyHeldByLND() {
				t.Logf("every request left is a pay alice's LND holds in flight; not waiting for them")
				return results, dead
			}
		}
	}
}

// heldByLND returns the payment hashes alice's LND reports in flight while
// no channel of hers has an HTLC for them. LND v0.20.1 leaves a payment so
// when it stops at the moment an HTLC attempt is handed to its switch: the
// attempt's result never comes, across restarts, so the payment is neither
// settled nor failed. The service must not answer such a request either way.
func heldByLND(t *testing.T, ctx context.Context) map[string]bool {
	t.Helper()
	alice := env.network.Alice
	pmts, err := alice.Lightning.ListPayments(ctx, &lnrpc.ListPaymentsRequest{IncludeIncomplete: true, MaxPayments: 100_000})
	if err != nil {
		t.Logf("listing alice's payments: %v", err)
		return nil
	}
	chans, err := alice.Lightning.ListChannels(ctx, &lnrpc.ListChannelsRequest{})
	if err != nil {
		t.Logf("listing alice's channels: %v", err)
		return nil
	}
	onChannel := map[string]bool{}
	for _, c := range chans.Channels {
		for _, h := range c.PendingHtlcs {
			onChannel[hex.EncodeToString(h.HashLock)] = true
		}
	}
	held := map[string]bool{}
	for _, p := range pmts.Payments {
		if p.Status == lnrpc.Payment_IN_FLIGHT && !onChannel[p.PaymentHash] {
			held[p.PaymentHash] = true
		}
	}
	return held
}

type chaosData struct {
	Status  string          `json:"status"`
	Message json.RawMessage `json:"message"`
}

func (d chaosData) outcome() string {
	if d.Status == "success" {
		return "success"
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(d.Message, &e)
	return e.Error
}

func resultData(t *testing.T, value []byte) chaosData {
	t.Helper()
	_, body, err := wire.OpenResult(value, []byte(hmacKey))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data chaosData `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r.Data
}

// settledOn reports whether node has a settled invoice with hash.
func settledOn(t *testing.T, ctx context.Context, node *regtest.Node, hash string) bool {
	t.Helper()
	h, _ := hex.DecodeString(hash)
	inv, err := node.Lightning.LookupInvoice(ctx, &lnrpc.PaymentHash{RHash: h})
	if err != nil {
		return false
	}
	return inv.State == lnrpc.Invoice_SETTLED
}

// injectRandomFault makes the proxy before alice lose, break, delay or cut
// off some of her answers, and says what it did.
func injectRandomFault(rng *rand.Rand, p *faultproxy.Proxy) string {
	n := 1 + rng.IntN(3)
	switch rng.IntN(4) {
	case 0:
		p.Inject(sendPayment, faultproxy.BreakAfterForward(codes.Unavailable).KeepUpstream().Times(n))
		return fmt.Sprintf("the next %d SendPaymentV2 answers lost after LND took the payment", n)
	case 1:
		p.Inject(trackPayment, faultproxy.Answer(codes.Unknown, "chaos: something odd").Times(n))
		return fmt.Sprintf("the next %d TrackPaymentV2 calls answered Unknown, unforwarded", n)
	case 2:
		method := []string{sendPayment, trackPayment, "/lnrpc.Lightning/AddInvoice"}[rng.IntN(3)]
		d := time.Duration(500+rng.IntN(4500)) * time.Millisecond
		p.Inject(method, faultproxy.Delay(d).Times(n))
		return fmt.Sprintf("the next %d calls of %s delayed %s", n, method, d)
	}
	return fmt.Sprintf("every connection dropped (%d)", p.DropConnections())
}

func describe(events []chaosEvent) string {
	var parts []string
	for _, e := range events {
		parts = append(parts, fmt.Sprintf("%s at %s", e.what, e.at))
	}
	return strings.Join(parts, ", ")
}

// explainMissing logs, for requests left without an answer, where each one
// got to: whether the input topic has it and at which offset, the group's
// committed offsets, the ledger's entry, and the service log's lines about it.
func explainMissing(t *testing.T, ctx context.Context, plan chaosPlan, procs []*serviceProcess, dir string,
	reqs []*chaosReq, results map[string][][]byte, dead map[string]bool) {
	t.Helper()
	missing := map[string]*chaosReq{}
	for _, r := range reqs {
		if r.authentic() && len(results[r.id]) == 0 || !r.authentic() && !dead[r.id] {
			missing[r.id] = r
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()))
	if err != nil {
		t.Logf("explaining: %v", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if ends, err := adm.ListEndOffsets(ctx, plan.in()); err == nil {
		ends.Each(func(o kadm.ListedOffset) { t.Logf("input partition %d ends at %d", o.Partition, o.Offset) })
	}
	if offs, err := adm.FetchOffsets(ctx, plan.group()); err == nil {
		offs.Each(func(o kadm.OffsetResponse) {
			t.Logf("group committed partition %s/%d at %d", o.Topic, o.Partition, o.At)
		})
	}

	// Where the requests are in the input topic.
	in, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.ConsumeTopics(plan.in()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Logf("explaining: %v", err)
		return
	}
	defer in.Close()
	ends, _ := adm.ListEndOffsets(ctx, plan.in())
	seen := map[int32]int64{}
	where := map[string][]string{}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := in.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(rec *kgo.Record) {
			seen[rec.Partition] = rec.Offset + 1
			v := rec.Value
			if len(v) < wire.SignatureWidth {
				return
			}
			id := strings.ToLower(string(v[len(v)-wire.SignatureWidth:]))
			if missing[id] != nil {
				where[id] = append(where[id], fmt.Sprintf("%d/%d", rec.Partition, rec.Offset))
			}
		})
		all := true
		ends.Each(func(o kadm.ListedOffset) { all = all && seen[o.Partition] >= o.Offset })
		if all {
			break
		}
	}

	lg, err := ledger.Open(ctx, plan.databaseURL, filepath.Join(dir, "ledger-0"))
	if err != nil {
		t.Logf("explaining: ledger: %v", err)
		lg = nil
	} else {
		defer lg.Close()
	}
	// What alice's LND says of the payments: one it holds in flight has
	// no answer the service could truthfully give yet.
	lndState := map[string]string{}
	if pmts, err := env.network.Alice.Lightning.ListPayments(ctx, &lnrpc.ListPaymentsRequest{IncludeIncomplete: true, MaxPayments: 100_000}); err == nil {
		inFlight := 0
		for _, p := range pmts.Payments {
			var htlcs []string
			for _, h := range p.Htlcs {
				htlcs = append(htlcs, h.Status.String())
			}
			lndState[p.PaymentHash] = fmt.Sprintf("%s (htlcs %v)", p.Status, htlcs)
			if p.Status == lnrpc.Payment_IN_FLIGHT {
				inFlight++
			}
		}
		t.Logf("alice's LND has %d payments, %d of them in flight", len(pmts.Payments), inFlight)
	}
	if chans, err := env.network.Alice.Lightning.ListChannels(ctx, &lnrpc.ListChannelsRequest{}); err == nil {
		for _, c := range chans.Channels {
			t.Logf("alice's channel %s: active %v, %d pending HTLCs", c.ChannelPoint, c.Active, len(c.PendingHtlcs))
		}
	}

	var logs []string
	for _, p := range procs {
		b, _ := os.ReadFile(p.logPath)
		logs = append(logs, strings.Split(string(b), "\n")...)
	}
	shown := 0
	for id, r := range missing {
		state := "not in the ledger"
		if lg != nil {
			if e, err := lg.Get(ctx, id); err == nil {
				state = fmt.Sprintf("ledger %s pay_state %q hash %s created %s updated %s", e.State, e.PayState, e.PaymentHash,
					e.CreatedAt.Format("15:04:05.000"), e.UpdatedAt.Format("15:04:05.000"))
			}
		}
		lnd := ""
		if r.hash != "" {
			lnd = "; alice's LND: " + lndState[r.hash]
			if lndState[r.hash] == "" {
				lnd = "; alice's LND has no payment for it"
			}
		}
		t.Logf("no answer for %s %s: input at %v; %s%s", r.kind, id, where[id], state, lnd)
		if shown++; shown > 5 {
			continue
		}
		for _, l := range logs {
			if strings.Contains(l, id) || r.hash != "" && strings.Contains(l, r.hash) {
				t.Logf("    %s", l)
			}
		}
	}
}

// alerted reports whether the service's log warns that request id has been
// unfinished for too long.
func alerted(logs, id string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "request unfinished for too long") && strings.Contains(l, id) {
			return true
		}
	}
	return false
}
