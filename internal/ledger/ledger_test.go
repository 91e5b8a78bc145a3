package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"lightning-service/internal/ledger"
	"lightning-service/internal/ledger/ledgertest"
)

// store is one implementation under test; open opens another handle on
// the same database, as a second instance would.
type store struct {
	name string
	open func(t *testing.T) ledger.Ledger
}

// stores returns SQLite always and PostgreSQL when a URL is given, each
// over a fresh database (a fresh schema on PostgreSQL).
func stores(t *testing.T) []store {
	t.Helper()
	dir := t.TempDir()
	out := []store{{name: "sqlite", open: func(t *testing.T) ledger.Ledger {
		l, err := ledger.OpenSQLite(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}}}
	if base := os.Getenv(ledgertest.DatabaseURLEnv); base != "" {
		u := ledgertest.FreshSchema(t, base)
		out = append(out, store{name: "postgres", open: func(t *testing.T) ledger.Ledger {
			l, err := ledger.OpenPostgres(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		}})
	}
	return out
}

func each(t *testing.T, f func(t *testing.T, s store)) {
	for _, s := range stores(t) {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func id(t *testing.T) string { return randomHex(t, 32) }

var ctx = context.Background()

func TestBeginRecordsOnce(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		e := ledger.Entry{ID: id(t), Task: "create", Key: []byte("k"), Headers: []ledger.Header{{Key: "a", Value: []byte{0, 1, 2}}, {Key: "b"}}}
		got, created, err := l.Begin(ctx, e)
		if err != nil || !created {
			t.Fatalf("Begin = %v, %v", created, err)
		}
		if got.ID != e.ID || got.Task != "create" || got.State != ledger.Pending || got.PayState != ledger.NotPaying ||
			!bytes.Equal(got.Key, e.Key) || !reflect.DeepEqual(got.Headers, e.Headers) || got.Result != nil || got.CreatedAt.IsZero() {
			t.Errorf("recorded %+v", got)
		}
		again, created, err := l.Begin(ctx, ledger.Entry{ID: e.ID, Task: "pay", Key: []byte("other")})
		if err != nil || created {
			t.Fatalf("second Begin = %v, %v", created, err)
		}
		if again.Task != "create" || !bytes.Equal(again.Key, e.Key) {
			t.Errorf("second Begin changed the entry: %+v", again)
		}
		if _, err := l.Get(ctx, id(t)); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Get of an unknown id: %v", err)
		}
	})
}

func TestFinishFirstResultWins(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		rid := id(t)
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: rid, Task: "create", Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
		got, err := l.Finish(ctx, ledger.Entry{ID: rid, Result: []byte("first"), PaymentHash: "ab"})
		if err != nil || got.State != ledger.Final || string(got.Result) != "first" || got.PaymentHash != "ab" || string(got.Key) != "k" {
			t.Fatalf("Finish = %+v, %v", got, err)
		}
		got, err = l.Finish(ctx, ledger.Entry{ID: rid, Result: []byte("second"), PaymentHash: "cd"})
		if err != nil || string(got.Result) != "first" || got.PaymentHash != "ab" {
			t.Errorf("second Finish = %+v, %v; want the first result kept", got, err)
		}

		// A request never begun (decode) is recorded by Finish.
		other := id(t)
		got, err = l.Finish(ctx, ledger.Entry{ID: other, Task: "decode", Key: []byte("k2"), Headers: []ledger.Header{{Key: "h", Value: []byte("v")}}, Result: []byte("r")})
		if err != nil || got.State != ledger.Final || got.Task != "decode" || string(got.Key) != "k2" || len(got.Headers) != 1 || string(got.Result) != "r" {
			t.Errorf("Finish of an unrecorded request = %+v, %v", got, err)
		}
		if _, err := l.Finish(ctx, ledger.Entry{ID: id(t)}); err == nil {
			t.Error("Finish without a result succeeded")
		}
	})
}

func TestClaimPayment(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		hash := randomHex(t, 32)
		first, second, third := id(t), id(t), id(t)
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: first, Task: "pay", Key: []byte("k1")}); err != nil {
			t.Fatal(err)
		}
		c, err := l.ClaimPayment(ctx, first, hash)
		if err != nil || !c.Mine(first) || c.Resumed || c.Holder.PayState != ledger.Paying || c.Holder.PaymentHash != hash || string(c.Holder.Key) != "k1" {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		c, err = l.ClaimPayment(ctx, first, hash)
		if err != nil || !c.Mine(first) || !c.Resumed {
			t.Errorf("claim again by its holder = %+v, %v; want resumed", c, err)
		}
		// Another request finds the holder; it is recorded as a side effect
		// only when it claims.
		c, err = l.ClaimPayment(ctx, second, hash)
		if err != nil || c.Mine(second) || c.Holder.ID != first || c.Holder.PayState != ledger.Paying {
			t.Errorf("claim by another = %+v, %v", c, err)
		}
		if h, err := l.Holder(ctx, hash); err != nil || h.ID != first {
			t.Errorf("Holder = %+v, %v", h, err)
		}

		// The payment fails: the hash is free again.
		if err := l.EndPayment(ctx, first, false); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Holder(ctx, hash); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Holder after a failed payment: %v", err)
		}
		c, err = l.ClaimPayment(ctx, second, hash)
		if err != nil || !c.Mine(second) || c.Resumed {
			t.Fatalf("claim after a failed payment = %+v, %v", c, err)
		}
		if e, _ := l.Get(ctx, second); e.Task != "pay" || e.State != ledger.Pending {
			t.Errorf("the claimer was recorded as %+v", e)
		}

		// It succeeds: the hash stays held, by a paid request.
		if err := l.EndPayment(ctx, second, true); err != nil {
			t.Fatal(err)
		}
		c, err = l.ClaimPayment(ctx, third, hash)
		if err != nil || c.Holder.ID != second || c.Holder.PayState != ledger.Paid {
			t.Errorf("claim of a paid hash = %+v, %v", c, err)
		}
		// Ending again changes nothing.
		if err := l.EndPayment(ctx, second, false); err != nil {
			t.Fatal(err)
		}
		if h, err := l.Holder(ctx, hash); err != nil || h.ID != second || h.PayState != ledger.Paid {
			t.Errorf("Holder after a second EndPayment = %+v, %v", h, err)
		}
		if e, _ := l.Get(ctx, first); e.PayState != ledger.Unpaid {
			t.Errorf("first request's pay state %q, want unpaid", e.PayState)
		}
	})
}

// Many claimers of one hash at once, through two handles on one database (as
// two instances): exactly one holds it.
func TestClaimPaymentConcurrent(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		ls := []ledger.Ledger{s.open(t), s.open(t)}
		for round := 0; round < 5; round++ {
			hash := randomHex(t, 32)
			const n = 16
			ids := make([]string, n)
			for i := range ids {
				ids[i] = id(t)
			}
			holders := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := ls[i%2].ClaimPayment(ctx, ids[i], hash)
					if err != nil {
						t.Error(err)
						return
					}
					holders[i] = c.Holder.ID
				}()
			}
			wg.Wait()
			winners := 0
			for i := range n {
				if holders[i] != holders[0] {
					t.Fatalf("round %d: claimers saw different holders: %v", round, holders)
				}
				if holders[i] == ids[i] {
					winners++
				}
			}
			if winners != 1 {
				t.Fatalf("round %d: %d claimers hold the hash", round, winners)
			}
		}
	})
}

func TestUnfinished(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		pending, paying, payingFinal, done, paid := id(t), id(t), id(t), id(t), id(t)
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := l.Begin(ctx, ledger.Entry{ID: pending, Task: "create"})
		must(err)
		_, err = l.ClaimPayment(ctx, paying, randomHex(t, 32))
		must(err)
		_, err = l.ClaimPayment(ctx, payingFinal, randomHex(t, 32))
		must(err)
		_, err = l.Finish(ctx, ledger.Entry{ID: payingFinal, Result: []byte("internal error")})
		must(err)
		_, err = l.Finish(ctx, ledger.Entry{ID: done, Task: "decode", Result: []byte("r")})
		must(err)
		_, err = l.ClaimPayment(ctx, paid, randomHex(t, 32))
		must(err)
		must(l.EndPayment(ctx, paid, true))
		_, err = l.Finish(ctx, ledger.Entry{ID: paid, Result: []byte("r")})
		must(err)

		es, err := l.Unfinished(ctx)
		must(err)
		var got []string
		for _, e := range es {
			got = append(got, e.ID)
		}
		if want := []string{pending, paying, payingFinal}; !reflect.DeepEqual(got, want) {
			t.Errorf("Unfinished = %v, want %v", got, want)
		}
	})
}

// Migrations are applied once, whatever the number of instances starting at
// once, and a second start changes nothing.
func TestMigrationsIdempotentAndConcurrent(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		var wg sync.WaitGroup
		opened := make([]ledger.Ledger, 6)
		for i := range opened {
			wg.Add(1)
			go func() { defer wg.Done(); opened[i] = s.open(t) }()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		rid := id(t)
		if _, err := opened[0].Finish(ctx, ledger.Entry{ID: rid, Task: "decode", Result: []byte("r")}); err != nil {
			t.Fatal(err)
		}
		again := s.open(t)
		if e, err := again.Get(ctx, rid); err != nil || string(e.Result) != "r" {
			t.Errorf("after reopening: %+v, %v", e, err)
		}
	})
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	l, err := ledger.OpenSQLite(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	db, err := sql.Open("sqlite", "file:"+dir+"/"+ledger.SQLiteFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`INSERT INTO schema_version (version, name, applied_at) VALUES (%d, 'future', 0)`, ledger.SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if l, err := ledger.OpenSQLite(ctx, dir); err == nil {
		l.Close()
		t.Fatal("opened a ledger whose schema is newer than the build")
	}
}

// More writers at once than the store has connections, on a ledger just
// opened: none waits forever for a connection another one holds.
func TestManyWritersOnAFreshLedger(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const n = 100
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rid := id(t)
				if _, _, err := l.Begin(ctx, ledger.Entry{ID: rid, Task: "pay"}); err != nil {
					errs <- err
					return
				}
				if _, err := l.ClaimPayment(ctx, rid, fmt.Sprintf("%064x", i)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}
