//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/caller"
	"lightning-service/internal/wire"
)

// hostileRecord is what the test keeps of one record anyone could write: its
// coordinates and enough to recognize its dead letter, whole or summarized,
// without keeping its megabyte.
type hostileRecord struct {
	kind              string
	partition         int32
	offset            int64
	size              int // key, value, headers' keys and values
	valueLen          int
	valueSHA          [32]byte
	prefix            []byte // the value's first KiB
	key               []byte // nil when longer than a KiB
	keyLen            int
	headers, headerSz int
	headerSHA         [32]byte // of the headers in order
	mustSummarize     bool     // its dead letter cannot fit franz-go's 1000012 bytes

	seen, summarized bool // its dead letter was read; it was a summary
}

func headersDigest(hs []kgo.RecordHeader) [32]byte {
	h := sha256.New()
	for _, x := range hs {
		fmt.Fprintf(h, "%d:%s%d:", len(x.Key), x.Key, len(x.Value))
		h.Write(x.Value)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func keep(kind string, rec *kgo.Record) *hostileRecord {
	k := &hostileRecord{kind: kind, partition: rec.Partition, offset: rec.Offset, valueLen: len(rec.Value),
		valueSHA: sha256.Sum256(rec.Value), prefix: slices.Clone(rec.Value[:min(len(rec.Value), 1024)]),
		keyLen: len(rec.Key), headers: len(rec.Headers), headerSHA: headersDigest(rec.Headers)}
	if len(rec.Key) <= 1024 {
		k.key = slices.Clone(rec.Key)
	}
	k.size = len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		k.headerSz += len(h.Key) + len(h.Value)
	}
	k.size += k.headerSz
	// Whole, its dead letter adds the batch's 61 bytes and error, detail
	// and source-* (70 bytes at least): beyond franz-go's 1000012.
	k.mustSummarize = k.size > 1_000_012-130
	return k
}

// hostileWave makes the records anyone can write without a key: values of
// about a megabyte (binary, and text shaped like a request whose signature
// is wrong, so its HMAC is computed over the megabyte), huge and many
// headers, huge keys, empty records, binary garbage.
func hostileWave(rng *rand.Rand) (kinds []string, build func(i int) *kgo.Record) {
	add := func(n int, kind string) {
		for range n {
			kinds = append(kinds, kind)
		}
	}
	add(25, "1MB binary")
	add(25, "1MB request-shaped")
	add(10, "900KB header")
	add(5, "999KB header")
	add(5, "10000 headers")
	add(3, "999KB key")
	add(10, "empty")
	add(5, "empty value, keyed")
	add(25, "garbage")
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	return kinds, func(i int) *kgo.Record {
		rec := &kgo.Record{Key: []byte(fmt.Sprint("hostile-", i))}
		switch kinds[i] {
		case "1MB binary":
			rec.Value = random(bigValue)
		case "1MB request-shaped":
			v := []byte(fmt.Sprintf("%013ddecode          ", time.Now().UnixMilli()))
			v = append(v, bytes.Repeat([]byte("lnbcrt"), (bigValue-len(v)-64)/6)...)
			v = append(v, bytes.Repeat([]byte("ab"), 32)...)
			rec.Value = v
		case "900KB header":
			rec.Value = random(200)
			rec.Headers = []kgo.RecordHeader{{Key: "blob", Value: random(900_000)}, {Key: "trace", Value: []byte("t")}}
		case "999KB header":
			rec.Value = random(200)
			rec.Headers = []kgo.RecordHeader{{Key: "blob", Value: bytes.Repeat([]byte("h"), 999_000)}}
		case "10000 headers":
			rec.Value = random(100)
			for j := range 10_000 {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: fmt.Sprint("h", j), Value: []byte("vv")})
			}
		case "999KB key":
			rec.Key = bytes.Repeat([]byte("k"), 999_900)
			rec.Value = random(50)
		case "empty":
			rec.Key = nil
		case "empty value, keyed":
			rec.Value = []byte{}
		case "garbage":
			rec.Value = random(1 + rng.IntN(4096))
		}
		return rec
	}
}

// bigValue is about the largest value the broker takes on its defaults
// (message.max.bytes 1048588): its dead letter, with the added headers, is
// larger than franz-go's producer takes (1000012 bytes).
const bigValue = 999_950

// procMemory is a process's resident set now and at its peak, from /proc.
func procMemory(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the service's memory: %v", err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// heapInUse is the service's go_memstats_heap_inuse_bytes, from /metrics.
func heapInUse(t *testing.T, addr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("reading the service's metrics: %v", err)
	}
	defer resp.Body.Close()
	for s := bufio.NewScanner(resp.Body); s.Scan(); {
		if v, ok := strings.CutPrefix(s.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatal("no go_memstats_heap_inuse_bytes in /metrics")
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// buildService builds ./cmd/lightning-service into dir.
func buildService(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lightning-service")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "lightning-service/cmd/lightning-service").CombinedOutput(); err != nil {
		t.Fatalf("building the service: %v\n%s", err, out)
	}
	return bin
}

// hostileServiceEnv is the environment of the service process on alice, on the
// given topics and group.
func hostileServiceEnv(t *testing.T, ctx context.Context, dir, in, out, dlq, group string, extra ...string) []string {
	t.Helper()
	alice, err := env.network.Alice.ServiceSettings(ctx, filepath.Join(dir, "service.macaroon"))
	if err != nil {
		t.Fatal(err)
	}
	vars := append(withoutLightningVars(os.Environ()),
		"LIGHTNING_KAFKA_BROKERS="+env.broker.Addr(),
		"LIGHTNING_INPUT_TOPIC="+in,
		"LIGHTNING_OUTPUT_TOPIC="+out,
		"LIGHTNING_DLQ_TOPIC="+dlq,
		"LIGHTNING_CONSUMER_GROUP="+group,
		"LIGHTNING_KAFKA_SESSION_TIMEOUT=6s",
		"LIGHTNING_HMAC_KEY="+hmacKey,
		"LIGHTNING_PREIMAGE_SECRET=hostile-preimage-secret-known-only-to-the-service",
		"LIGHTNING_HTTP_ADDR=",
		"LIGHTNING_DATA_DIR="+filepath.Join(dir, "ledger"),
		"LIGHTNING_SHUTDOWN_GRACE=5s",
	)
	for k, v := range alice {
		vars = append(vars, k+"="+v)
	}
	return append(vars, extra...)
}

// normalCall is one signed request sent among the hostile records.
type normalCall struct {
	id      string
	task    string
	sent    time.Time
	latency time.Duration
	result  *caller.Result
}

// The service as its own process takes two waves of records anyone can write
// without a key — 50 values of about a megabyte each, huge and many headers,
// huge keys, empty records, binary garbage — while signed decode and create
// requests (some with huge or many headers) keep coming. Every signed request
// is answered within seconds, those with huge headers with the headers
// trimmed and counted; every hostile record is dead-lettered, whole or as a
// bounded summary, found by its coordinates; and the service's memory after
// the second wave is what it was after the first.
func TestE2EHostile(t *testing.T) {
	const maxLatency = 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	in, out, dlq := "hostile-in", "hostile-out", "hostile-dlq"
	if err := env.broker.CreateTopics(ctx, 4, in, out, dlq); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildService(t, ctx, dir)
	httpAddr := freeAddr(t)
	p := &serviceProcess{bin: bin, logPath: filepath.Join(env.network.Dir, "hostile-service.log"),
		env: hostileServiceEnv(t, ctx, dir, in, out, dlq, "hostile", "LIGHTNING_HTTP_ADDR="+httpAddr)}
	t.Logf("service log: %s", p.logPath)
	p.start(t)
	defer p.kill()
	pid := p.cmd.Process.Pid

	cl, err := caller.New(ctx, []string{env.broker.Addr()}, in, out, []byte(hmacKey))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	inv, err := env.network.Bob.AddInvoice(ctx, 1234, "hostile neighbours", false)
	if err != nil {
		t.Fatal(err)
	}
	decodePayload := wire.PayPayload(inv.PaymentRequest)

	var calls []*normalCall
	var callsMu sync.Mutex
	sent := 0          // signed requests, guarded by callsMu
	var last time.Time // their latest timestamp, guarded by callsMu
	sendNormal := func() {
		// Each gets a timestamp of its own: two decodes of one invoice
		// signed in the same millisecond would be one request.
		callsMu.Lock()
		i := sent
		sent++
		now := time.Now().Truncate(time.Millisecond)
		if !now.After(last) {
			now = last.Add(time.Millisecond)
		}
		last = now
		callsMu.Unlock()
		task, payload := "decode", decodePayload
		if i%3 == 2 {
			task = "create"
			payload, _ = wire.CreatePayload(int64(100+i), fmt.Sprint("hostile create ", i), 3600)
		}
		var headers []kgo.RecordHeader
		switch i % 7 {
		case 3: // a signed request with a huge header: its result is trimmed
			headers = []kgo.RecordHeader{{Key: "trace", Value: []byte(fmt.Sprint("normal-", i))}, {Key: "blob", Value: bytes.Repeat([]byte("b"), 500_000)}}
		case 5: // and with many
			for j := range 300 {
				headers = append(headers, kgo.RecordHeader{Key: fmt.Sprint("h", j), Value: []byte("v")})
			}
		}
		c := &normalCall{task: task, sent: now}
		var err error
		c.id, err = cl.Send(ctx, wire.SignRequest([]byte(hmacKey), c.sent, task, payload), []byte(fmt.Sprint("normal-", i)), headers...)
		if err != nil {
			t.Errorf("sending a signed request: %v", err)
			return
		}
		callsMu.Lock()
		calls = append(calls, c)
		callsMu.Unlock()
	}
	waitNormal := func() {
		t.Helper()
		callsMu.Lock()
		defer callsMu.Unlock()
		for _, c := range calls {
			if c.result != nil {
				continue
			}
			wctx, wcancel := context.WithTimeout(ctx, time.Until(c.sent.Add(2*time.Minute)))
			r, err := cl.Wait(wctx, c.id)
			wcancel()
			if err != nil {
				t.Fatalf("signed %s request %s: %v (service log %s)", c.task, c.id, err, p.logPath)
			}
			c.result, c.latency = r, r.Record.Timestamp.Sub(c.sent)
		}
	}

	// Warm up: the service consumes, and its memory has settled.
	for range 5 {
		sendNormal()
	}
	waitNormal()
	time.Sleep(2 * time.Second)
	rss0, _ := procMemory(t, pid)
	heap0 := heapInUse(t, httpAddr)

	producer, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.DefaultProduceTopic(in),
		kgo.ProducerBatchMaxBytes(1<<20), // what the broker takes; franz-go's default is lower
		kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var hostile []*hostileRecord
	type memAt struct {
		rss, peak, heap int64
		took            time.Duration
	}
	var waves []memAt
	for wave := range 2 {
		began := time.Now()
		kinds, build := hostileWave(rng)
		stopNormal := make(chan struct{})
		normalDone := make(chan struct{})
		go func() { // a signed request every 100 ms meanwhile
			defer close(normalDone)
			for {
				select {
				case <-stopNormal:
					return
				case <-time.After(100 * time.Millisecond):
				}
				sendNormal()
			}
		}()
		for i := range kinds {
			if i%4 == 0 { // and one among every four hostile records
				sendNormal()
			}
			rec := build(i)
			if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatalf("producing a %s record: %v", kinds[i], err)
			}
			hostile = append(hostile, keep(kinds[i], rec))
		}
		stop := sync.OnceFunc(func() { close(stopNormal); <-normalDone })
		defer stop() // also when a check below fails the test
		waitDeadLettered(t, ctx, dlq, hostile, p.logPath)
		stop()
		waitNormal()
		time.Sleep(3 * time.Second)
		rss, peak := procMemory(t, pid)
		waves = append(waves, memAt{rss: rss, peak: peak, heap: heapInUse(t, httpAddr), took: time.Since(began)})
		t.Logf("wave %d: %d hostile records dead-lettered in %s", wave+1, len(kinds), time.Since(began).Round(100*time.Millisecond))
	}

	// The signed requests: all answered, within seconds, headers bounded.
	var lat []time.Duration
	trimmed := 0
	for _, c := range calls {
		lat = append(lat, c.latency)
		if c.result.Data.Status != "success" {
			t.Errorf("signed %s request %s: %s", c.task, c.id, c.result.Raw)
		}
		if c.latency > maxLatency {
			t.Errorf("signed %s request %s answered after %s, want within %s", c.task, c.id, c.latency, maxLatency)
		}
		hs, size := c.result.Record.Headers, 0
		for _, h := range hs {
			size += len(h.Key) + len(h.Value)
		}
		if n := len(hs); n > 65 || size > 16<<10+64 {
			t.Errorf("result of %s carries %d headers, %d bytes", c.id, n, size)
		}
		if len(hs) > 0 && hs[len(hs)-1].Key == "lightning-headers-trimmed" {
			trimmed++
		}
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))].Round(time.Millisecond) }
	wantTrimmed := 0
	for i := range sent {
		if i%7 == 3 || i%7 == 5 {
			wantTrimmed++
		}
	}
	if trimmed != wantTrimmed {
		t.Errorf("%d results with lightning-headers-trimmed, want %d (the requests with huge or many headers)", trimmed, wantTrimmed)
	}

	whole, summarized := 0, 0
	for _, h := range hostile {
		if h.summarized {
			summarized++
		} else {
			whole++
		}
	}
	var hostileBytes int64
	for _, h := range hostile {
		hostileBytes += int64(h.size)
	}
	t.Logf("signed requests: %d answered (%d with trimmed headers); latency p50 %s, p95 %s, max %s", len(calls), trimmed, q(0.5), q(0.95), q(1))
	t.Logf("hostile records: %d (%s), dead-lettered whole %d, as summaries %d", len(hostile), mib(hostileBytes), whole, summarized)
	t.Logf("service memory: before RSS %s heap %s; after wave 1 RSS %s heap %s; after wave 2 RSS %s heap %s; peak RSS %s",
		mib(rss0), mib(heap0), mib(waves[0].rss), mib(waves[0].heap), mib(waves[1].rss), mib(waves[1].heap), mib(waves[1].peak))
	logs, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	summaries := bytes.Count(logs, []byte(`"msg":"answer cannot be published; dead-lettering a summary of the record"`))
	retries := bytes.Count(logs, []byte(`"msg":"publishing answer failed; retrying"`))
	t.Logf("service log: %d summaries dead-lettered, %d produce retries", summaries, retries)
	if retries != 0 || summaries != summarized {
		t.Errorf("the service retried %d produces and logged %d summaries, want none retried and %d summaries", retries, summaries, summarized)
	}
	// Kept, a wave's records would add about 60 MiB.
	if grew := waves[1].rss - waves[0].rss; grew > 32<<20 {
		t.Errorf("RSS grew by %s over the second wave, want flat (at most 32 MiB)", mib(grew))
	}
	if waves[1].peak > 1<<30 {
		t.Errorf("peak RSS %s, want well under 1 GiB", mib(waves[1].peak))
	}
}

// waitDeadLettered reads the dead-letter topic from its start until every
// hostile record has its dead letter, found by its coordinates, and checks
// each: whole (the record's key, value and headers, then the reason and the
// coordinates) or a bounded summary (too_large, the size, the hash and the
// first KiB of the value).
func waitDeadLettered(t *testing.T, ctx context.Context, dlq string, hostile []*hostileRecord, logPath string) {
	t.Helper()
	byCoord := map[[2]int64]*hostileRecord{}
	left := 0
	for _, h := range hostile {
		byCoord[[2]int64{int64(h.partition), h.offset}] = h
		if !h.seen {
			left++
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(3 * time.Minute)
	for left > 0 {
		if time.Now().After(deadline) {
			var missing []string
			for _, h := range hostile {
				if !h.seen {
					missing = append(missing, fmt.Sprintf("%s at %d/%d", h.kind, h.partition, h.offset))
				}
			}
			t.Fatalf("%d hostile records without a dead letter: %v (service log %s)", left, missing, logPath)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(rec *kgo.Record) {
			hd := map[string]string{}
			for _, x := range rec.Headers {
				hd[x.Key] = string(x.Value) // the last of a name: ours follow the record's own
			}
			part, _ := strconv.ParseInt(hd["source-partition"], 10, 32)
			off, _ := strconv.ParseInt(hd["source-offset"], 10, 64)
			h := byCoord[[2]int64{part, off}]
			if h == nil || hd["source-topic"] != "hostile-in" {
				return // a signed request's, or another test's
			}
			if h.seen {
				return // a copy, after a redelivery
			}
			h.seen = true
			left--
			if hd["error"] == "too_large" {
				h.summarized = true
				if hd["original-size"] != strconv.Itoa(h.size) || hd["value-sha256"] != hex.EncodeToString(h.valueSHA[:]) ||
					!bytes.Equal(rec.Value, h.prefix) || len(rec.Headers) != 7 || !bytes.Equal(rec.Key, h.key) {
					t.Errorf("%s record %d/%d: summary with headers %v, a value of %d bytes and a key of %d, want size %d, its hash, its first KiB",
						h.kind, h.partition, h.offset, hd, len(rec.Value), len(rec.Key), h.size)
				}
				return
			}
			if h.mustSummarize {
				t.Errorf("%s record %d/%d of %d bytes dead-lettered whole, which franz-go cannot produce", h.kind, h.partition, h.offset, h.size)
			}
			own := rec.Headers[:max(0, len(rec.Headers)-5)]
			if sha256.Sum256(rec.Value) != h.valueSHA || len(rec.Key) != h.keyLen || headersDigest(own) != h.headerSHA ||
				hd["error"] != "malformed" && hd["error"] != "bad_signature" && hd["error"] != "stale_timestamp" {
				t.Errorf("%s record %d/%d: dead letter (%s) is not the record whole: value %d bytes (want %d), key %d (want %d), %d headers (want %d + 5)",
					h.kind, h.partition, h.offset, hd["error"], len(rec.Value), h.valueLen, len(rec.Key), h.keyLen, len(rec.Headers), h.headers)
			}
		})
	}
}

// With LIGHTNING_CLOCK_REFERENCE=broker the service refuses to start on an
// input topic with CreateTime (Kafka's default), naming the setting and the
// topic, and starts on one with LogAppendTime.
func TestE2EBrokerClockRefusesCreateTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	createTime, appendTime, out, dlq := "clockref-createtime-in", "clockref-appendtime-in", "clockref-out", "clockref-dlq"
	if err := env.broker.CreateTopics(ctx, 1, createTime, out, dlq); err != nil {
		t.Fatal(err)
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	v := "LogAppendTime"
	if resp, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, map[string]*string{"message.timestamp.type": &v}, appendTime); err != nil || resp.Err != nil {
		t.Fatalf("creating %s: %v %v", appendTime, err, resp.Err)
	}
	dir := t.TempDir()
	bin := buildService(t, ctx, dir)

	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	cmd := exec.CommandContext(rctx, bin, "serve")
	cmd.Env = hostileServiceEnv(t, ctx, dir, createTime, out, dlq, "clockref", "LIGHTNING_CLOCK_REFERENCE=broker")
	output, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("the service on a CreateTime topic with LIGHTNING_CLOCK_REFERENCE=broker: %v, want exit status 1; output:\n%s", err, output)
	}
	last := strings.TrimSpace(string(output))
	last = last[strings.LastIndex(last, "\n")+1:]
	for _, want := range []string{"LIGHTNING_CLOCK_REFERENCE=broker", "message.timestamp.type=LogAppendTime", strconv.Quote(createTime), "CreateTime"} {
		if !strings.Contains(last, want) {
			t.Errorf("the refusal %q does not say %s", last, want)
		}
	}
	t.Logf("refused: %s", last)

	p := &serviceProcess{bin: bin, logPath: filepath.Join(dir, "appendtime.log"),
		env: hostileServiceEnv(t, ctx, dir, appendTime, out, dlq, "clockref", "LIGHTNING_CLOCK_REFERENCE=broker")}
	p.start(t)
	defer p.kill()
	eventually(t, time.Minute, "the service to consume a LogAppendTime topic", func() bool {
		b, _ := os.ReadFile(p.logPath)
		return bytes.Contains(b, []byte(`"msg":"lightning-service consuming"`))
	})
}
