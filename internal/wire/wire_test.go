package wire_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/wire"
	"lightning-service/internal/wire/wiretest"
)

func keysOf(v *wiretest.Vectors) wire.Keys {
	k := wire.Keys{Current: []byte(v.Key)}
	for _, p := range v.PreviousKeys {
		k.Previous = append(k.Previous, []byte(p))
	}
	return k
}

func TestValidVectors(t *testing.T) {
	v := wiretest.Load(t)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	now := time.UnixMilli(v.NowMS)
	for _, c := range v.Valid {
		t.Run(c.Name, func(t *testing.T) {
			r, err := ver.Open([]byte(c.Value), now)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := r.Timestamp.UnixMilli(); got != c.TimestampMS {
				t.Errorf("timestamp %d, want %d", got, c.TimestampMS)
			}
			if r.Task.String() != c.Task || string(r.TaskName) != c.Task {
				t.Errorf("task %v (%q), want %q", r.Task, r.TaskName, c.Task)
			}
			if want := strings.ToLower(c.Value[len(c.Value)-64:]); r.ID() != want {
				t.Errorf("ID %s, want %s", r.ID(), want)
			}
			switch r.Task {
			case wire.TaskDecode, wire.TaskPay:
				pr, err := wire.PaymentRequest(r.Payload)
				if err != nil {
					t.Fatalf("PaymentRequest: %v", err)
				}
				if string(pr) != c.Fields.PaymentRequest {
					t.Errorf("payment request %q, want %q", pr, c.Fields.PaymentRequest)
				}
			case wire.TaskCreate:
				f, err := wire.Create(r.Payload)
				if err != nil {
					t.Fatalf("Create: %v", err)
				}
				if c.Fields.Amount == nil || f.AmountSat != *c.Fields.Amount || string(f.Memo) != c.Fields.Message || f.ExpirySec != c.Fields.Expiry {
					t.Errorf("fields %d %q %d, want %v %q %d", f.AmountSat, f.Memo, f.ExpirySec, c.Fields.Amount, c.Fields.Message, c.Fields.Expiry)
				}
			default:
				t.Fatalf("unexpected task %v", r.Task)
			}
		})
	}
}

func TestRejectedVectors(t *testing.T) {
	v := wiretest.Load(t)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	for _, c := range v.Rejected {
		t.Run(c.Name, func(t *testing.T) {
			_, err := ver.Open([]byte(c.Value), time.UnixMilli(v.NowMS))
			var rej *wire.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("Open = %v, want a rejection", err)
			}
			if string(rej.Reason) != c.Reason {
				t.Fatalf("reason %s (%s), want %s", rej.Reason, rej.Detail, c.Reason)
			}
			if rej.Detail == "" {
				t.Error("rejection without detail")
			}
		})
	}
}

// The invalid vectors authenticate; their payloads fail. Payment requests
// that do not decode are the lightning package's to judge, so here they must
// only get through the wire checks.
func TestInvalidVectors(t *testing.T) {
	v := wiretest.Load(t)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	for _, c := range v.Invalid {
		t.Run(c.Name, func(t *testing.T) {
			r, err := ver.Open([]byte(c.Value), time.UnixMilli(v.NowMS))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(r.TaskName) != c.Task {
				t.Fatalf("task %q, want %q", r.TaskName, c.Task)
			}
			var perr error
			switch r.Task {
			case wire.TaskCreate:
				_, perr = wire.Create(r.Payload)
			case wire.TaskDecode, wire.TaskPay:
				_, perr = wire.PaymentRequest(r.Payload)
				if c.Error == string(core.CodeInvalidPaymentRequest) {
					if perr != nil {
						t.Fatalf("PaymentRequest: %v", perr)
					}
					return
				}
			case wire.TaskUnknown:
				if c.Error != string(core.CodeUnknownTask) {
					t.Fatalf("unknown task, want %s", c.Error)
				}
				return
			}
			if got := core.Describe(perr).Code; string(got) != c.Error {
				t.Fatalf("error %v, want %s", perr, c.Error)
			}
		})
	}
}

func TestResultVectors(t *testing.T) {
	v := wiretest.Load(t)
	s := wire.NewSealer([]byte(v.Key))
	for _, c := range v.Results {
		t.Run(c.Name, func(t *testing.T) {
			// Rebuild the result through the typed structs, so the field
			// order they define is what is checked.
			var in struct {
				Task string `json:"task"`
				Data struct {
					Message     json.RawMessage `json:"message"`
					Status      wire.Status     `json:"status"`
					RequestID   string          `json:"request_id"`
					PaymentHash string          `json:"payment_hash"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(c.JSON), &in); err != nil {
				t.Fatal(err)
			}
			var msg any = in.Data.Message
			if in.Data.Status == wire.StatusError {
				var em wire.ErrorMessage
				if err := json.Unmarshal(in.Data.Message, &em); err != nil {
					t.Fatal(err)
				}
				msg = em
			} else {
				var s string
				if err := json.Unmarshal(in.Data.Message, &s); err != nil {
					t.Fatal(err)
				}
				msg = s
			}
			r := &wire.Result{Task: in.Task, Data: wire.ResultData{Message: msg, Status: in.Data.Status, RequestID: in.Data.RequestID, PaymentHash: in.Data.PaymentHash}}
			got, err := s.Seal(time.UnixMilli(c.TimestampMS), r)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.Value {
				t.Fatalf("sealed\n%s\nwant\n%s", got, c.Value)
			}
		})
	}
}

func sign(key, signed string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(signed))
	return hex.EncodeToString(m.Sum(nil))
}

func request(ts time.Time, task, payload string) string {
	return strconv.FormatInt(ts.UnixMilli(), 10) + pad(task, 16) + payload
}

// Other encodings a caller may produce, beyond the vectors.
func TestCallerEncodings(t *testing.T) {
	key := "k"
	ver := wire.Keys{Current: []byte(key)}.Verifier(5 * time.Minute)
	now := time.UnixMilli(1763900000000)
	pr := "lnbcrt1" + strings.Repeat("q", 600)

	cases := []struct {
		name   string
		value  string
		reason wire.Reason // "" when it must open
		check  func(t *testing.T, r wire.Request)
	}{
		{name: "upper-case signature", value: func() string {
			s := request(now, "decode", pr)
			return s + strings.ToUpper(sign(key, s))
		}()},
		{name: "payment request longer than 400, unpadded", value: func() string {
			s := request(now, "pay", pr)
			return s + sign(key, s)
		}(), check: func(t *testing.T, r wire.Request) {
			got, err := wire.PaymentRequest(r.Payload)
			if err != nil || string(got) != pr {
				t.Fatalf("PaymentRequest = %q, %v", got, err)
			}
		}},
		{name: "task padded on both sides", value: func() string {
			s := request(now, "  pay", strings.Repeat(" ", 400))
			return s + sign(key, s)
		}(), check: func(t *testing.T, r wire.Request) {
			if r.Task != wire.TaskPay {
				t.Fatalf("task %v", r.Task)
			}
		}},
		{name: "multi-byte memo", value: func() string {
			s := request(now, "create", pad("1", 37)+pad("日本語のメモ 💸", 37)+pad("60", 37))
			return s + sign(key, s)
		}(), check: func(t *testing.T, r wire.Request) {
			f, err := wire.Create(r.Payload)
			if err != nil || string(f.Memo) != "日本語のメモ 💸" || f.AmountSat != 1 || f.ExpirySec != 60 {
				t.Fatalf("Create = %+v, %v", f, err)
			}
		}},
		{name: "multi-byte task name", value: func() string {
			s := request(now, "pagar€", strings.Repeat(" ", 400))
			return s + sign(key, s)
		}(), check: func(t *testing.T, r wire.Request) {
			if r.Task != wire.TaskUnknown || string(r.TaskName) != "pagar€" {
				t.Fatalf("task %v %q", r.Task, r.TaskName)
			}
		}},
		{name: "signed over other bytes", value: func() string {
			s := request(now, "decode", pr)
			return s + sign(key, s+"x")
		}(), reason: wire.BadSignature},
		{name: "invalid UTF-8", value: func() string {
			s := request(now, "decode", "\xff"+pr)
			return s + sign(key, s)
		}(), reason: wire.Malformed},
		{name: "trailing newline", value: func() string {
			s := request(now, "decode", pr)
			return s + sign(key, s) + "\n"
		}(), reason: wire.Malformed},
		{name: "timestamp with a sign", value: func() string {
			s := "+763900000000" + request(now, "decode", pr)[13:]
			return s + sign(key, s)
		}(), reason: wire.Malformed},
		{name: "seconds, not milliseconds", value: func() string {
			s := "0001763900000" + request(now, "decode", pr)[13:]
			return s + sign(key, s)
		}(), reason: wire.StaleTimestamp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ver.Open([]byte(c.value), now)
			if c.reason != "" {
				var rej *wire.RejectError
				if !errors.As(err, &rej) || rej.Reason != c.reason {
					t.Fatalf("Open = %v, want %s", err, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

func pad(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }

func TestCreateFields(t *testing.T) {
	cases := []struct {
		amount, memo, expiry string
		code                 core.Code
	}{
		{"0", "", "1", ""},
		{"10000000000000", "", "31536000", ""},
		{"00000010000000000001", "", "60", core.CodeInvalidAmount},
		{"99999999999999999999999999999", "", "60", core.CodeInvalidAmount},
		{"1.5", "", "60", core.CodeInvalidAmount},
		{"1.05", "", "60", core.CodeInvalidAmount},
		{"100.0", "", "3600.00", ""},
		{"100.", "", "60", ""},
		{".0", "", "60", core.CodeInvalidAmount},
		{"1e3", "", "60", core.CodeInvalidAmount},
		{"5", "", "0.0", core.CodeInvalidExpiry},
		{"", "", "60", core.CodeInvalidAmount},
		{"1 000", "", "60", core.CodeInvalidAmount},
		{"+5", "", "60", core.CodeInvalidAmount},
		{"5", "", "31536001", core.CodeInvalidExpiry},
		{"5", "", "000", core.CodeInvalidExpiry},
		{"5", "", "-60", core.CodeInvalidExpiry},
		{"5", "", "", core.CodeInvalidExpiry},
	}
	for _, c := range cases {
		_, err := wire.Create([]byte(pad(c.amount, 37) + pad(c.memo, 37) + pad(c.expiry, 37)))
		if c.code == "" {
			if err != nil {
				t.Errorf("%q/%q: %v", c.amount, c.expiry, err)
			}
			continue
		}
		if got := core.Describe(err).Code; got != c.code {
			t.Errorf("%q/%q: %v, want %s", c.amount, c.expiry, err, c.code)
		}
	}
	// A memo one character too long shifts the expiry out of its field.
	if _, err := wire.Create([]byte(pad("5", 37) + pad("x", 38) + pad("60", 37))); core.Describe(err).Code != core.CodeMalformedPayload {
		t.Errorf("long payload: %v", err)
	}
	if _, err := wire.PaymentRequest([]byte("lnbc1")); core.Describe(err).Code != core.CodeMalformedPayload {
		t.Errorf("short payment request field: %v", err)
	}
}

func TestSealVerifies(t *testing.T) {
	s := wire.NewSealer([]byte("key"))
	v, err := s.Seal(time.UnixMilli(1763900000000), &wire.Result{Task: "lightning-decode", Data: wire.ResultData{Message: "<a & b>", Status: wire.StatusSuccess, RequestID: "ab"}})
	if err != nil {
		t.Fatal(err)
	}
	body, sig := v[:len(v)-64], v[len(v)-64:]
	if sign("key", string(body)) != string(sig) {
		t.Fatal("signature does not verify")
	}
	if !bytes.Contains(body, []byte(`"message":"<a & b>"`)) {
		t.Fatalf("memo text escaped: %s", body)
	}
	if !bytes.HasPrefix(body, []byte("1763900000000{")) {
		t.Fatalf("timestamp: %s", body)
	}
}

// The caller's encoder reproduces every valid vector from its fields.
func TestSignRequestVectors(t *testing.T) {
	v := wiretest.Load(t)
	keys := map[string]string{}
	for _, c := range v.Valid {
		keys[c.Name] = v.Key
	}
	keys["pay-previous-key"] = v.PreviousKeys[0]
	for _, c := range v.Valid {
		var payload string
		switch c.Task {
		case "create":
			var err error
			if payload, err = wire.CreatePayload(*c.Fields.Amount, c.Fields.Message, c.Fields.Expiry); err != nil {
				t.Fatal(err)
			}
			if c.Name == "create-leading-zeros" {
				continue // zero-padded by a caller of its own; the service reads it (TestValidVectors)
			}
		default:
			payload = wire.PayPayload(c.Fields.PaymentRequest)
		}
		got := wire.SignRequest([]byte(keys[c.Name]), time.UnixMilli(c.TimestampMS), c.Task, payload)
		if string(got) != c.Value {
			t.Errorf("%s:\n got %s\nwant %s", c.Name, got, c.Value)
		}
	}
	for _, c := range v.Results {
		ts, body, err := wire.OpenResult([]byte(c.Value), []byte("other"), []byte(v.Key))
		if err != nil || ts.UnixMilli() != c.TimestampMS || string(body) != c.JSON {
			t.Errorf("%s: OpenResult = %v %s %v", c.Name, ts, body, err)
		}
		if _, _, err := wire.OpenResult([]byte(c.Value), []byte("other")); err == nil {
			t.Errorf("%s: opened with the wrong key", c.Name)
		}
	}
}

// A stale rejection comes with the authenticated request, so that the
// service can recognise one its ledger knows; the other rejections do not.
func TestStaleRejectionKeepsTheRequest(t *testing.T) {
	key := []byte("stale-key")
	ver := wire.Keys{Current: key}.Verifier(time.Minute)
	signedAt := time.UnixMilli(1_763_900_000_000)
	value := wire.SignRequest(key, signedAt, "pay", wire.PayPayload("lnbcrt1stale"))

	r, err := ver.Open(value, signedAt.Add(time.Hour))
	var rej *wire.RejectError
	if !errors.As(err, &rej) || rej.Reason != wire.StaleTimestamp {
		t.Fatalf("Open = %v, want stale", err)
	}
	fresh, err := ver.Open(value, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != fresh.ID() || r.Task != wire.TaskPay || string(r.TaskName) != "pay" || !bytes.Equal(r.Payload, fresh.Payload) || !r.Timestamp.Equal(signedAt) {
		t.Errorf("stale request %+v, want %+v", r, fresh)
	}

	forged := wire.SignRequest([]byte("other-key"), signedAt, "pay", wire.PayPayload("lnbcrt1stale"))
	if r, err := ver.Open(forged, signedAt.Add(time.Hour)); err == nil || r.Task != wire.TaskUnknown || r.Payload != nil {
		t.Errorf("forged record opened as %+v, %v", r, err)
	}
}
