package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func validEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls.cert")
	mac := filepath.Join(dir, "admin.macaroon")
	for _, p := range []string{cert, mac} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]string{
		"LIGHTNING_HMAC_KEY":        "callers-key",
		"LIGHTNING_PREIMAGE_SECRET": strings.Repeat("s", 32),
		"LIGHTNING_LND_TLS_CERT":    cert,
		"LIGHTNING_LND_MACAROON":    mac,
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(validEnv(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.InputTopic != "lightning-service" || c.OutputTopic != "celery" || c.DLQTopic != "lightning-service-dlq" ||
		c.MaxClockSkew != 300*time.Second || c.Concurrency != 64 || c.EmbeddedKafkaAddr != "127.0.0.1:9092" ||
		len(c.KafkaBrokers) != 0 || c.PayTimeout != time.Minute || c.DataDir != "data" || c.DatabaseURL != "" ||
		c.ClockReference != "service" || c.RecoveryInterval != 5*time.Second || c.PaymentLease != 30*time.Second || c.PayHandOff != 10*time.Second || c.PendingAlert != 10*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagWinsOverEnv(t *testing.T) {
	e := validEnv(t)
	e["LIGHTNING_CONCURRENCY"] = "8"
	e["LIGHTNING_HMAC_PREVIOUS_KEYS"] = "old1, old2,"
	c, err := Load([]string{"--concurrency=3", "--kafka-brokers=a:1,b:2"}, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != 3 || len(c.KafkaBrokers) != 2 || len(c.HMACPreviousKeys) != 2 || c.HMACPreviousKeys[1] != "old2" {
		t.Fatalf("%+v", c)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"LIGHTNING_MAX_CLOCK_SKEW":    "5 minutes",
		"LIGHTNING_CONCURRENCY":       "0",
		"LIGHTNING_KAFKA_BROKERS":     "localhost",
		"LIGHTNING_NETWORK":           "bitcoin-mainnet",
		"LIGHTNING_OUTPUT_TOPIC":      "bad topic",
		"LIGHTNING_LND_TLS_CERT":      "/nonexistent/tls.cert",
		"LIGHTNING_PAY_TIMEOUT":       "500ms",
		"LIGHTNING_PREIMAGE_SECRET":   "short-secret-do-not-print",
		"LIGHTNING_DATA_DIR":          "",
		"LIGHTNING_CLOCK_REFERENCE":   "kafka",
		"LIGHTNING_RECOVERY_INTERVAL": "0s",
		"LIGHTNING_PENDING_ALERT":     "soon",
		"LIGHTNING_DATABASE_URL":      "mysql://u:short-secret-do-not-print@db/x",
	}
	for name, value := range cases {
		e := validEnv(t)
		e[name] = value
		_, err := Load(nil, env(e))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v does not name it", name, value, err)
		}
		if err != nil && strings.Contains(err.Error(), "short-secret-do-not-print") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

func TestLedgerSettings(t *testing.T) {
	e := validEnv(t)
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e["LIGHTNING_DATA_DIR"] = file
	if _, err := Load(nil, env(e)); err == nil || !strings.Contains(err.Error(), "LIGHTNING_DATA_DIR") {
		t.Errorf("a file as LIGHTNING_DATA_DIR: %v", err)
	}
	e = validEnv(t)
	e["LIGHTNING_DATA_DIR"] = filepath.Join(t.TempDir(), "not", "yet")
	e["LIGHTNING_DATABASE_URL"] = "postgresql://svc:pw@db.internal:5432/ledger?sslmode=verify-full"
	c, err := Load(nil, env(e))
	if err != nil || c.DatabaseURL != e["LIGHTNING_DATABASE_URL"] || c.DataDir != e["LIGHTNING_DATA_DIR"] {
		t.Errorf("valid ledger settings: %+v, %v", c, err)
	}
}

func TestRequiredAndCrossChecks(t *testing.T) {
	_, err := Load(nil, env(map[string]string{}))
	for _, name := range []string{"LIGHTNING_HMAC_KEY", "LIGHTNING_PREIMAGE_SECRET", "LIGHTNING_LND_TLS_CERT", "LIGHTNING_LND_MACAROON"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("missing %s not reported: %v", name, err)
		}
	}
	e := validEnv(t)
	e["LIGHTNING_HMAC_KEY"] = e["LIGHTNING_PREIMAGE_SECRET"]
	if _, err := Load(nil, env(e)); err == nil || !strings.Contains(err.Error(), "must differ") {
		t.Errorf("preimage secret equal to the HMAC key accepted: %v", err)
	}
	e = validEnv(t)
	e["LIGHTNING_OUTPUT_TOPIC"] = "lightning-service"
	if _, err := Load(nil, env(e)); err == nil {
		t.Error("output topic equal to the input topic accepted")
	}
	e = validEnv(t)
	e["LIGHTNING_HTTP_ADDR"] = ""
	if c, err := Load(nil, env(e)); err != nil || c.HTTPAddr != "" {
		t.Errorf("empty LIGHTNING_HTTP_ADDR should disable HTTP: %v", err)
	}
}

// A key shorter than 32 bytes is allowed but warned about: one line for the
// current key, one for the rotated-out keys, each naming its variable and
// never a key.
func TestShortHMACKeysWarned(t *testing.T) {
	long := strings.Repeat("k", 32)
	e := validEnv(t)
	e["LIGHTNING_HMAC_KEY"] = long
	e["LIGHTNING_HMAC_PREVIOUS_KEYS"] = long + "-old," + long + "-older"
	c, err := Load(nil, env(e))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("keys of 32 bytes and more: warnings %q, want none", w)
	}

	e["LIGHTNING_HMAC_KEY"] = "short-current-key-do-not-print"
	e["LIGHTNING_HMAC_PREVIOUS_KEYS"] = long + ",short-old-key-do-not-print,old2-do-not-print"
	if c, err = Load(nil, env(e)); err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 2 || !strings.Contains(w[0], "LIGHTNING_HMAC_KEY") || !strings.Contains(w[1], "LIGHTNING_HMAC_PREVIOUS_KEYS") ||
		!strings.Contains(w[0], "32 bytes") || !strings.Contains(w[1], "2 and 3") {
		t.Errorf("warnings %q, want one naming LIGHTNING_HMAC_KEY and one naming keys 2 and 3 of LIGHTNING_HMAC_PREVIOUS_KEYS", w)
	}
	for _, line := range w {
		if strings.Contains(line, "do-not-print") {
			t.Errorf("a warning shows a key: %q", line)
		}
	}
}
