package task_test

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/core"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

var (
	regtest = &chaincfg.RegressionNetParams

	// t0 is the tests' present: requests are signed at it, invoices made
	// shortly before it.
	t0 = time.Date(2025, 11, 23, 12, 0, 0, 0, time.UTC)

	// fastRetry gives up on an unreachable node within milliseconds.
	fastRetry = task.Retry{Budget: 40 * time.Millisecond, Initial: time.Millisecond, Max: 4 * time.Millisecond}
)

// request returns an authenticated request as wire.Open would: name makes
// its id (signature), ts its timestamp.
func request(name string, t wire.Task, ts time.Time, payload []byte) *wire.Request {
	return &wire.Request{
		Timestamp: ts,
		Task:      t,
		TaskName:  []byte(t.String()),
		Payload:   payload,
		Signature: sha256.Sum256([]byte(name)),
	}
}

// payReqPayload is a decode or pay payload: the payment request padded to
// its field.
func payReqPayload(pr string) []byte {
	return []byte(fmt.Sprintf("%-*s", wire.PaymentRequestWidth, pr))
}

// createPayload is a create payload; fmt pads by characters, as the wire
// format counts them.
func createPayload(amount, memo, expiry string) []byte {
	w := wire.CreateFieldWidth
	return []byte(fmt.Sprintf("%-*s%-*s%-*s", w, amount, w, memo, w, expiry))
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// wantFailure checks that out failed with code and returns its Failure.
func wantFailure(t *testing.T, out task.Outcome, code core.Code) core.Failure {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("outcome succeeded with %#v, want %s", out.Message, code)
	}
	f := core.Describe(out.Err)
	if f.Code != code {
		t.Fatalf("code %s (err %v), want %s", f.Code, out.Err, code)
	}
	if f.Detail == "" {
		t.Errorf("%s has no detail", code)
	}
	return f
}

// wantSuccess checks that out succeeded.
func wantSuccess(t *testing.T, out task.Outcome) {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("outcome failed: %v", out.Err)
	}
}

// noSecretIn fails if any secret appears in s.
func noSecretIn(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("%s contains the secret %q", what, secret)
		}
	}
}
