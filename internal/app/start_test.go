package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/macaroon.v2"

	"lightning-service/internal/app"
	"lightning-service/internal/config"
)

// startEnv is the environment of a service that can start: the embedded
// broker on a free port, a ledger of its own, and an LND that is never
// reached (the client connects in the background; nothing here calls it).
func startEnv(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	mac, err := macaroon.New([]byte("root key"), []byte("id"), "lnd", macaroon.LatestVersion)
	if err != nil {
		t.Fatal(err)
	}
	macBytes, err := mac.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cert, macPath := filepath.Join(dir, "tls.cert"), filepath.Join(dir, "service.macaroon")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(macPath, macBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"LIGHTNING_EMBEDDED_KAFKA_ADDR": "127.0.0.1:0",
		"LIGHTNING_HMAC_KEY":            strings.Repeat("k", 32),
		"LIGHTNING_PREIMAGE_SECRET":     "a-preimage-secret-only-the-service-knows",
		"LIGHTNING_LND_ADDRESS":         "127.0.0.1:1",
		"LIGHTNING_LND_TLS_CERT":        cert,
		"LIGHTNING_LND_MACAROON":        macPath,
		"LIGHTNING_NETWORK":             "regtest",
		"LIGHTNING_HTTP_ADDR":           "",
		"LIGHTNING_DATA_DIR":            filepath.Join(dir, "ledger"),
		"LIGHTNING_SHUTDOWN_GRACE":      "1s",
	}
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start loads env and starts the service, logging to the returned buffer.
func start(t *testing.T, env map[string]string) (*app.Running, *lockedBuffer, error) {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	svc, err := app.Start(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if svc != nil {
		t.Cleanup(func() {
			if err := svc.Stop(); err != nil {
				t.Errorf("stopping the service: %v", err)
			}
		})
	}
	return svc, logs, err
}

// With LIGHTNING_CLOCK_REFERENCE=broker a request's freshness is judged by
// its record's timestamp; on a topic keeping the producer's time (CreateTime,
// Kafka's default, and all the embedded broker does) the caller sets it, so
// the service refuses to start, naming the setting and the topic.
func TestBrokerClockRefusedOnCreateTimeTopic(t *testing.T) {
	env := startEnv(t)
	env["LIGHTNING_CLOCK_REFERENCE"] = "broker"
	_, logs, err := start(t, env)
	if err == nil {
		t.Fatalf("the service started with LIGHTNING_CLOCK_REFERENCE=broker on the embedded broker, whose records keep the producer's time; log:\n%s", logs)
	}
	t.Logf("refused: %v", err)
	for _, want := range []string{"LIGHTNING_CLOCK_REFERENCE=broker", "message.timestamp.type=LogAppendTime", `"lightning-service"`, "CreateTime"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
}

// On an input topic with message.timestamp.type=LogAppendTime the service
// starts with LIGHTNING_CLOCK_REFERENCE=broker.
func TestBrokerClockStartsOnLogAppendTimeTopic(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "celery", "lightning-service-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	appendTime := "LogAppendTime"
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, map[string]*string{"message.timestamp.type": &appendTime}, "lightning-service")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}

	env := startEnv(t)
	env["LIGHTNING_KAFKA_BROKERS"] = strings.Join(cluster.ListenAddrs(), ",")
	env["LIGHTNING_CLOCK_REFERENCE"] = "broker"
	if _, logs, err := start(t, env); err != nil {
		t.Fatalf("the service did not start on a LogAppendTime topic: %v; log:\n%s", err, logs)
	}
}

// The embedded broker's default, the service's clock, starts as before; a
// key shorter than 32 bytes is warned about in one line naming its variable,
// never the key.
func TestEmbeddedDefaultStartsAndWarnsOfShortKey(t *testing.T) {
	env := startEnv(t)
	env["LIGHTNING_HMAC_KEY"] = "short-key-do-not-print"
	_, logs, err := start(t, env)
	if err != nil {
		t.Fatalf("the embedded default did not start: %v", err)
	}
	var warned int
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "LIGHTNING_HMAC_KEY") && strings.Contains(line, `"level":"WARN"`) {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings name LIGHTNING_HMAC_KEY, want 1; log:\n%s", warned, logs)
	}
	if strings.Contains(logs.String(), "do-not-print") {
		t.Errorf("the log shows the key:\n%s", logs)
	}
}
