//go:build e2e

// These tests fetch Kafka from Maven Central, run it and run the Python
// caller against it: go test -tags e2e -v -count=1 ./internal/kafkatest/ -timeout 20m
package kafkatest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/kafkatest"
)

const secret = "kafkatest-shared-secret"

// testLog sends progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startBroker(ctx context.Context, t *testing.T) *kafkatest.Broker {
	t.Helper()
	began := time.Now()
	lib, err := kafkatest.Fetch(ctx, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fetch: %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	b, err := kafkatest.Start(ctx, kafkatest.Options{LibDir: lib, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	t.Logf("start: %s", time.Since(began).Round(time.Millisecond))
	return b
}

func client(t *testing.T, b *kafkatest.Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// readAll reads a topic from the start until it has n records.
func readAll(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := client(t, b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: have %d of %d records: %v", topic, len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func values(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

func TestBrokerSurvivesRestartAndKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b := startBroker(ctx, t)
	const topic = "kafkatest-roundtrip"
	if err := b.CreateTopics(ctx, 1, topic); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopics(ctx, 1, topic); err == nil {
		t.Error("creating an existing topic: want an error")
	}
	// auto.create.topics.enable=false: a misspelt topic must fail, not appear.
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	err := client(t, b).ProduceSync(short, &kgo.Record{Topic: "kafkatest-no-such-topic", Value: []byte("x")}).FirstErr()
	cancelShort()
	if err == nil {
		t.Error("producing to a topic nobody created: want an error")
	}

	cl := client(t, b)
	produce := func(v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("producing %q: %v", v, err)
		}
	}
	produce("before restart")
	if got := values(readAll(ctx, t, b, topic, 1)); got[0] != "before restart" {
		t.Fatalf("read %q", got)
	}

	began := time.Now()
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart (SIGTERM, start again): %s", time.Since(began).Round(time.Millisecond))
	produce("after restart") // the same client reconnects to the same port
	want := []string{"before restart", "after restart"}
	if got := values(readAll(ctx, t, b, topic, 2)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart read %q, want %q", got, want)
	}

	b.Kill()
	began = time.Now()
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after SIGKILL: %s", time.Since(began).Round(time.Millisecond))
	produce("after kill")
	want = append(want, "after kill")
	if got := values(readAll(ctx, t, b, topic, 3)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after kill read %q, want %q", got, want)
	}
}

// caller runs lightning_caller.py command against b and returns its stdout
// lines.
func caller(ctx context.Context, t *testing.T, b *kafkatest.Broker, command string, args ...string) (lines []string, stderr string, err error) {
	t.Helper()
	python, err := kafkatest.PythonEnv(ctx, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := kafkatest.PythonClientDir()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	argv := append([]string{filepath.Join(dir, "lightning_caller.py"), command, "--bootstrap", b.Addr(), "--secret", secret}, args...)
	cmd := exec.CommandContext(ctx, python, argv...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, errOut.String(), err
}

func sign(data []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

func TestPythonCallerInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b := startBroker(ctx, t)
	if err := b.CreateTopics(ctx, 1, "lightning-service", "celery"); err != nil {
		t.Fatal(err)
	}

	t.Run("python sends, franz-go reads", func(t *testing.T) {
		lines, stderr, err := caller(ctx, t, b, "send", "--task", "create", "--amount", "1000",
			"--message", "interop Préstame", "--expiry", "3600", "--key", "order-1", "--header", "trace=abc")
		if err != nil || len(lines) != 1 {
			t.Fatalf("send: %v, output %q, stderr:\n%s", err, lines, stderr)
		}
		// A JSON lines file, with a payment request longer than the 400
		// characters it would be padded to.
		long := "lnbcrt" + strings.Repeat("q", 1199)
		file := filepath.Join(t.TempDir(), "requests.jsonl")
		jsonl := `{"task":"pay","fields":{"payment_request":"` + long + `"},"key":"order-2","headers":{"trace":"def"}}` + "\n" +
			`{"task":"decode","fields":{"payment_request":"lnbcrt1short"}}` + "\n"
		if err := os.WriteFile(file, []byte(jsonl), 0o644); err != nil {
			t.Fatal(err)
		}
		more, stderr, err := caller(ctx, t, b, "send", "--file", file)
		if err != nil || len(more) != 2 {
			t.Fatalf("send --file: %v, output %q, stderr:\n%s", err, more, stderr)
		}
		lines = append(lines, more...)

		type sent struct {
			Offset    int64  `json:"offset"`
			Key       string `json:"key"`
			RequestID string `json:"request_id"`
			Value     string `json:"value"`
		}
		want := []struct {
			task, key, trace, payload string
			chars                     int
		}{
			// Widths count characters: "é" is one of the memo's 37.
			{"create", "order-1", "abc", "", 13 + 16 + 3*37 + 64},
			{"pay", "order-2", "def", long, 13 + 16 + len(long) + 64},
			{"decode", "", "", "lnbcrt1short" + strings.Repeat(" ", 400-12), 13 + 16 + 400 + 64},
		}
		recs := readAll(ctx, t, b, "lightning-service", len(want))
		for i, r := range recs {
			var s sent
			if err := json.Unmarshal([]byte(lines[i]), &s); err != nil {
				t.Fatal(err)
			}
			w, v := want[i], string(r.Value)
			if v != s.Value || r.Offset != s.Offset || string(r.Key) != w.key || s.Key != w.key {
				t.Errorf("record %d: key %q offset %d value %q; caller said %+v", i, r.Key, r.Offset, v, s)
			}
			var trace string
			for _, h := range r.Headers {
				if h.Key == "trace" {
					trace = string(h.Value)
				}
			}
			if trace != w.trace {
				t.Errorf("record %d: headers %v, want trace=%q", i, r.Headers, w.trace)
			}
			if n := utf8.RuneCountInString(v); n != w.chars {
				t.Errorf("record %d: %d characters, want %d", i, n, w.chars)
			}
			if sig := v[len(v)-64:]; sig != sign(r.Value[:len(r.Value)-64]) || sig != s.RequestID {
				t.Errorf("record %d: signature %s does not verify (request_id %s)", i, sig, s.RequestID)
			}
			if task := strings.TrimSpace(v[13:29]); task != w.task {
				t.Errorf("record %d: task %q, want %q", i, task, w.task)
			}
			if w.payload != "" && v[29:len(v)-64] != w.payload {
				t.Errorf("record %d: payload %q, want %q", i, v[29:len(v)-64], w.payload)
			}
		}
	})

	t.Run("franz-go sends results, python verifies", func(t *testing.T) {
		seal := func(body string) []byte {
			signed := fmt.Sprintf("%013d%s", time.Now().UnixMilli(), body)
			return []byte(signed + sign([]byte(signed)))
		}
		good := `{"task":"lightning-create","data":{"message":"lnbcrt1","status":"success","request_id":"aa","payment_hash":"bb"}}`
		tampered := bytes.Replace(seal(`{"task":"lightning-pay","data":{"message":"x","status":"success","request_id":"cc"}}`), []byte(`"x"`), []byte(`"y"`), 1)
		recs := []*kgo.Record{
			{Topic: "celery", Key: []byte("order-1"), Value: seal(good), Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}}},
			// Another service's record on the shared topic: skipped, not an error.
			{Topic: "celery", Value: []byte(`{"task":"billing.charge","args":[]}`)},
			{Topic: "celery", Value: tampered},
			{Topic: "celery", Key: []byte("order-2"), Value: seal(`{"task":"lightning-decode","data":{"message":{"error":"invalid_payment_request","detail":"x"},"status":"error","request_id":"dd"}}`)},
		}
		if err := client(t, b).ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		lines, stderr, err := caller(ctx, t, b, "results", "--count", "2", "--timeout", "60")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "matches no configured key") {
			t.Errorf("results over a tampered record: exit %v, want 1 with the bad signature reported; stderr:\n%s", err, stderr)
		}
		if len(lines) != 2 {
			t.Fatalf("results printed %d lines, want 2: %q\nstderr:\n%s", len(lines), lines, stderr)
		}
		var first struct {
			Key     string            `json:"key"`
			Headers map[string]string `json:"headers"`
			Result  json.RawMessage   `json:"result"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatal(err)
		}
		if string(first.Result) != good || first.Key != "order-1" || first.Headers["trace"] != "abc" {
			t.Errorf("first result %s", lines[0])
		}
		if !strings.Contains(lines[1], `"request_id":"dd"`) {
			t.Errorf("second result %s", lines[1])
		}
	})
}
