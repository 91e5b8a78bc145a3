//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/caller"
	"lightning-service/internal/wire"
)

// endpoint is a service as its callers see it: a caller on its topics, and
// where its log is, named when an answer does not come.
type endpoint struct {
	caller *caller.Caller
	logs   string
}

// suite is the suite's own service.
func suite() endpoint { return endpoint{env.caller, env.logPath} }

// send signs a request now and sends it to the suite's service; it returns
// the value and its id.
func send(t *testing.T, task, payload string) ([]byte, string) {
	t.Helper()
	return suite().send(t, task, payload)
}

func sendValue(t *testing.T, value []byte) string {
	t.Helper()
	return suite().sendValue(t, value, []byte(t.Name()))
}

// wait returns the first verified result for id from the suite's service.
func wait(t *testing.T, id string) *caller.Result {
	t.Helper()
	return suite().wait(t, 90*time.Second, id)[0]
}

// send signs a request now and sends it with the test's name as its key.
func (e endpoint) send(t *testing.T, task, payload string) ([]byte, string) {
	t.Helper()
	value := wire.SignRequest([]byte(hmacKey), time.Now(), task, payload)
	return value, e.sendValue(t, value, []byte(t.Name()))
}

func (e endpoint) sendValue(t *testing.T, value, key []byte, headers ...kgo.RecordHeader) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := e.caller.Send(ctx, value, key, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// wait returns the first verified result of each of ids, waiting for all
// of them together for up to d, and fails the test naming every id left
// without one.
func (e endpoint) wait(t *testing.T, d time.Duration, ids ...string) []*caller.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out := make([]*caller.Result, len(ids))
	var missing []string
	for i, id := range ids {
		r, err := e.caller.Wait(ctx, id)
		if err != nil {
			missing = append(missing, id)
			continue
		}
		out[i] = r
	}
	if len(missing) > 0 {
		t.Fatalf("no result within %s for %d of %d requests: %v (service log: %s)", d, len(missing), len(ids), missing, e.logs)
	}
	return out
}

// call sends a request and waits for its result.
func call(t *testing.T, task, payload string) *caller.Result {
	t.Helper()
	_, id := send(t, task, payload)
	return wait(t, id)
}

func wantSuccess(t *testing.T, r *caller.Result) {
	t.Helper()
	if r.Data.Status != "success" {
		t.Fatalf("%s: status %s: %s", r.Task, r.Data.Status, r.Raw)
	}
}

// wantError checks an error result's code and, for pay, its legacy text.
func wantError(t *testing.T, r *caller.Result, code string) caller.Error {
	t.Helper()
	if r.Data.Status != "error" {
		t.Fatalf("%s: want error %s, got %s", r.Task, code, r.Raw)
	}
	e, err := r.ErrorMessage()
	if err != nil {
		t.Fatal(err)
	}
	if e.Error != code {
		t.Fatalf("%s: error %q (%s), want %q", r.Task, e.Error, e.Detail, code)
	}
	if e.Detail == "" {
		t.Errorf("%s: error without detail", r.Task)
	}
	if r.Task == "lightning-pay" {
		if want := legacy[code]; e.PaymentError != want {
			t.Errorf("payment_error %q, want %q", e.PaymentError, want)
		}
	}
	return e
}

// legacy is the payment_error text callers of pay match on, as the contract
// states it (written out here, not taken from the code under test).
var legacy = map[string]string{
	"invalid_payment_request":   "invalid payment request",
	"invoice_expired":           "invoice expired",
	"already_paid":              "invoice is already paid",
	"no_route":                  "no_route",
	"timeout":                   "timeout",
	"insufficient_balance":      "insufficient_balance",
	"incorrect_payment_details": "incorrect_payment_details",
	"amount_required":           "amount required",
	"node_unavailable":          "failed to connect to all addresses",
	"internal":                  "internal error",
}

// payMessage is a successful pay's message.
type payMessage struct {
	PaymentHash     string `json:"payment_hash"`
	PaymentPreimage string `json:"payment_preimage"`
	ValueSat        int64  `json:"value_sat"`
	ValueMsat       int64  `json:"value_msat"`
	FeeSat          int64  `json:"fee_sat"`
	FeeMsat         int64  `json:"fee_msat"`
	Status          string `json:"status"`
	PaymentRoute    struct {
		TotalFeesMsat int64 `json:"total_fees_msat"`
		TotalAmtMsat  int64 `json:"total_amt_msat"`
		Hops          []struct {
			ChanID  uint64 `json:"chan_id"`
			PubKey  string `json:"pub_key"`
			FeeMsat int64  `json:"fee_msat"`
		} `json:"hops"`
	} `json:"payment_route"`
}

func decodePay(t *testing.T, r *caller.Result) payMessage {
	t.Helper()
	wantSuccess(t, r)
	var m payMessage
	if err := json.Unmarshal(r.Data.Message, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// lndDecode is LND's own DecodePayReq of pr, as lncli prints it.
func lndDecode(t *testing.T, pr string) any {
	t.Helper()
	resp, err := env.network.Alice.Lightning.DecodePayReq(context.Background(), &lnrpc.PayReqString{PayReq: pr})
	if err != nil {
		t.Fatalf("LND DecodePayReq: %v", err)
	}
	b, err := lnrpc.ProtoJSONMarshalOpts.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return jsonValue(t, b)
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// sameJSON compares the service's JSON with protojson's, key for key. The
// only liberty: protojson writes 64-bit integers as strings, the contract
// as numbers.
func sameJSON(path string, ours, theirs any) error {
	switch o := ours.(type) {
	case map[string]any:
		th, ok := theirs.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: object vs %T", path, theirs)
		}
		if a, b := keys(o), keys(th); !reflect.DeepEqual(a, b) {
			return fmt.Errorf("%s: keys %v, LND has %v", path, a, b)
		}
		for k := range o {
			if err := sameJSON(path+"."+k, o[k], th[k]); err != nil {
				return err
			}
		}
	case []any:
		th, ok := theirs.([]any)
		if !ok || len(th) != len(o) {
			return fmt.Errorf("%s: %v vs %v", path, o, theirs)
		}
		for i := range o {
			if err := sameJSON(fmt.Sprintf("%s[%d]", path, i), o[i], th[i]); err != nil {
				return err
			}
		}
	case json.Number:
		switch th := theirs.(type) {
		case json.Number:
			if th != o {
				return fmt.Errorf("%s: %s, LND has %s", path, o, th)
			}
		case string:
			if th != o.String() {
				return fmt.Errorf("%s: %s, LND has %q", path, o, th)
			}
		default:
			return fmt.Errorf("%s: %s, LND has %v", path, o, theirs)
		}
	default:
		if !reflect.DeepEqual(ours, theirs) {
			return fmt.Errorf("%s: %#v, LND has %#v", path, ours, theirs)
		}
	}
	return nil
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
