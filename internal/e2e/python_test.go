//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lightning-service/internal/kafkatest"
)

// A caller in Python — its own HMAC and fixed-width code, confluent-kafka
// (librdkafka) — sends requests to the real broker and verifies the
// service's results.
func TestE2EPythonCaller(t *testing.T) {
	dir, err := kafkatest.PythonClientDir()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := env.network.Bob.AddInvoice(bg, 808, "from Python: ¿qué tal?", false)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		RequestID string `json:"request_id"`
	}
	py := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, env.python, append([]string{filepath.Join(dir, "lightning_caller.py")}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	common := []string{"--bootstrap", env.broker.Addr(), "--secret", hmacKey}
	var ids []string
	for _, req := range [][]string{
		{"--task", "create", "--amount", "4200", "--message", "créé par Python ✓", "--expiry", "600"},
		{"--task", "decode", "--payment-request", inv.PaymentRequest},
		{"--task", "pay", "--payment-request", inv.PaymentRequest},
	} {
		var s sent
		if err := json.Unmarshal(bytes.TrimSpace(py(append(append([]string{"send"}, common...), req...)...)), &s); err != nil || s.RequestID == "" {
			t.Fatalf("python send: %v", err)
		}
		ids = append(ids, s.RequestID)
	}
	args := append([]string{"results"}, common...)
	args = append(args, "--count", "3", "--timeout", "90")
	for _, id := range ids {
		args = append(args, "--request-id", id)
	}
	results := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(py(args...)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("python results line %q: %v", sc.Text(), err)
		}
		data := findData(line)
		if data == nil {
			t.Fatalf("python results line without data: %s", sc.Text())
		}
		results[strings.ToLower(data["request_id"].(string))] = data
	}
	for i, task := range []string{"create", "decode", "pay"} {
		data := results[ids[i]]
		if data == nil {
			t.Fatalf("no verified result in Python for the %s request", task)
		}
		if data["status"] != "success" {
			t.Fatalf("%s from Python answered %v", task, data)
		}
	}
	if pr, _ := results[ids[0]]["message"].(string); !strings.HasPrefix(pr, "lnbcrt42u") {
		t.Errorf("create from Python answered %v", results[ids[0]]["message"])
	}
}

// findData finds the result's data object in a line the Python caller
// printed, whichever envelope it uses.
func findData(v map[string]any) map[string]any {
	if d, ok := v["data"].(map[string]any); ok {
		if _, ok := d["request_id"]; ok {
			return d
		}
	}
	for _, x := range v {
		if m, ok := x.(map[string]any); ok {
			if d := findData(m); d != nil {
				return d
			}
		}
	}
	return nil
}
