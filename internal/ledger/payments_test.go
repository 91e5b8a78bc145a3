package ledger_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
)

func newHash(t *testing.T) lightning.Hash {
	var h lightning.Hash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

// A lease long enough to outlast any test, and one over already.
func live() time.Time    { return time.Now().Add(time.Hour).Truncate(time.Millisecond) }
func expired() time.Time { return time.Now().Add(-time.Minute).Truncate(time.Millisecond) }

func claimOf(rid string, h lightning.Hash, owner string, until time.Time) payment.Claim {
	return payment.Claim{
		ID: rid, Task: "pay", Hash: h, PaymentRequest: "lnbcrt1" + h.String()[:8],
		Key: []byte("key-" + rid[:4]), Headers: []payment.Header{{Key: "trace", Value: []byte{0, 1, 2}}, {Key: "empty"}},
		Owner: owner, Until: until,
	}
}

func mustClaim(t *testing.T, p payment.Store, c payment.Claim) payment.Claimed {
	t.Helper()
	got, err := p.Claim(ctx, c)
	if err != nil {
		t.Fatalf("Claim(%s by %s): %v", c.ID[:8], c.Owner, err)
	}
	return got
}

func mustGet(t *testing.T, p payment.Store, rid string) payment.Record {
	t.Helper()
	r, err := p.Get(ctx, rid)
	if err != nil {
		t.Fatalf("Get(%s): %v", rid[:8], err)
	}
	return r
}

func mustEnd(t *testing.T, p payment.Store, e payment.End) payment.Record {
	t.Helper()
	r, err := p.End(ctx, e)
	if err != nil {
		t.Fatalf("End(%s by %s, %q): %v", e.ID[:8], e.Owner, e.State, err)
	}
	return r
}

func TestPayClaimRecordsAndHolds(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		p := l.Payments()
		rid, h, until := id(t), newHash(t), live()
		c := claimOf(rid, h, "a", until)
		got := mustClaim(t, p, c)
		self := got.Self
		if !got.Owned || got.Resumed || got.Holder != nil {
			t.Errorf("Claim = owned %v, resumed %v, holder %v; want owned, not resumed, no holder", got.Owned, got.Resumed, got.Holder)
		}
		if self.ID != rid || self.Hash != h || self.PaymentRequest != c.PaymentRequest || self.State != payment.Sending ||
			self.Final || self.Result != nil || self.Owner != "a" || !self.LeaseUntil.Equal(until) ||
			!bytes.Equal(self.Key, c.Key) || !reflect.DeepEqual(self.Headers, c.Headers) || self.CreatedAt.IsZero() {
			t.Errorf("claimed %+v", self)
		}
		if r := mustGet(t, p, rid); !reflect.DeepEqual(r, self) {
			t.Errorf("Get = %+v, want %+v", r, self)
		}
		if r, err := p.Holder(ctx, h); err != nil || r.ID != rid {
			t.Errorf("Holder = %+v, %v", r, err)
		}

		// The older methods read the same request: hex hash, the task, the
		// headers in their encoding.
		e, err := l.Get(ctx, rid)
		if err != nil || e.Task != "pay" || e.State != ledger.Pending || e.PayState != ledger.Paying ||
			e.PaymentHash != h.String() || !reflect.DeepEqual(e.Headers, []ledger.Header{{Key: "trace", Value: []byte{0, 1, 2}}, {Key: "empty"}}) {
			t.Errorf("the Ledger reads the claim as %+v, %v", e, err)
		}
		if e, err := l.Holder(ctx, h.String()); err != nil || e.ID != rid {
			t.Errorf("Ledger.Holder = %+v, %v", e, err)
		}

		if _, err := p.Get(ctx, id(t)); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("Get of an unknown request: %v", err)
		}
		if _, err := p.Holder(ctx, newHash(t)); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("Holder of an unclaimed hash: %v", err)
		}
		for _, bad := range []payment.Claim{
			{ID: id(t), Task: "create", Hash: h, Owner: "a", Until: until},
			{ID: id(t), Task: "pay", Hash: h, Until: until},
			{ID: id(t), Task: "pay", Hash: h, Owner: "a"},
			{ID: id(t), Task: "pay", Owner: "a", Until: until},
		} {
			if _, err := p.Claim(ctx, bad); err == nil {
				t.Errorf("Claim(%+v) succeeded", bad)
			}
		}
	})
}

func TestPayClaimAgain(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		rid, h := id(t), newHash(t)
		mustClaim(t, p, claimOf(rid, h, "a", live()))

		// Its owner again (a redelivery): the same claim, resumed, the
		// lease moved.
		later := live().Add(time.Minute)
		got := mustClaim(t, p, claimOf(rid, h, "a", later))
		if !got.Owned || !got.Resumed || got.Self.State != payment.Sending || !got.Self.LeaseUntil.Equal(later) {
			t.Errorf("Claim by its owner again = %+v", got)
		}

		// Another owner while the lease is live: nothing changes.
		before := mustGet(t, p, rid)
		got = mustClaim(t, p, claimOf(rid, h, "b", live()))
		if got.Owned || got.Resumed || got.Holder != nil || !reflect.DeepEqual(got.Self, before) {
			t.Errorf("Claim by another owner under a live lease = %+v", got)
		}
		if r := mustGet(t, p, rid); !reflect.DeepEqual(r, before) {
			t.Errorf("Claim under a live lease changed %+v to %+v", before, r)
		}

		// Once the lease is over, another owner takes it, and learns the
		// payment may have been sent.
		other := id(t)
		mustClaim(t, p, claimOf(other, newHash(t), "a", expired()))
		got = mustClaim(t, p, claimOf(other, newHash(t), "b", live()))
		if !got.Owned || !got.Resumed || got.Self.Owner != "b" || got.Self.State != payment.Sending {
			t.Errorf("Claim by another owner after the lease = %+v", got)
		}
	})
}

func TestPayClaimWaitsForTheHolder(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		h := newHash(t)
		first, second, third := id(t), id(t), id(t)
		mustClaim(t, p, claimOf(first, h, "a", live()))

		got := mustClaim(t, p, claimOf(second, h, "b", live()))
		if !got.Owned || got.Resumed || got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != first {
			t.Fatalf("Claim of a held hash = %+v", got)
		}
		if got.Self.Owner != "b" || got.Self.Hash != h {
			t.Errorf("waiting request recorded as %+v", got.Self)
		}
		// Asked again, still waiting; not resumed: it never held the hash.
		got = mustClaim(t, p, claimOf(second, h, "b", live()))
		if !got.Owned || got.Resumed || got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != first {
			t.Errorf("Claim of a held hash again = %+v", got)
		}
		got, err := p.Retry(ctx, second, "b")
		if err != nil || got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != first {
			t.Errorf("Retry while the hash is held = %+v, %v", got, err)
		}

		// The holder's payment fails: the hash is free, the waiter takes it.
		mustEnd(t, p, payment.End{ID: first, Owner: "a", State: payment.Unpaid, Result: []byte("failed")})
		got, err = p.Retry(ctx, second, "b")
		if err != nil || !got.Owned || got.Resumed || got.Holder != nil || got.Self.State != payment.Sending {
			t.Fatalf("Retry once the hash is free = %+v, %v", got, err)
		}
		if r, err := p.Holder(ctx, h); err != nil || r.ID != second {
			t.Errorf("Holder = %+v, %v", r, err)
		}

		// It pays: the hash stays held for good.
		got = mustClaim(t, p, claimOf(third, h, "c", live()))
		if got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != second {
			t.Errorf("Claim of a hash being sent = %+v", got)
		}
		mustEnd(t, p, payment.End{ID: second, Owner: "b", State: payment.Paid, Result: []byte("paid")})
		got, err = p.Retry(ctx, third, "c")
		if err != nil || got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != second || got.Holder.State != payment.Paid {
			t.Errorf("Retry of a paid hash = %+v, %v", got, err)
		}
		// The waiter ends holding nothing; the holder is untouched.
		r := mustEnd(t, p, payment.End{ID: third, Owner: "c", State: payment.Waiting, Result: []byte("paid by another")})
		if !r.Final || r.State != payment.Waiting {
			t.Errorf("ended waiter = %+v", r)
		}
		if r, err := p.Holder(ctx, h); err != nil || r.ID != second || r.State != payment.Paid {
			t.Errorf("Holder after the waiter ended = %+v, %v", r, err)
		}
	})
}

func TestPayClaimOfAFinalRequest(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		rid, h := id(t), newHash(t)
		mustClaim(t, p, claimOf(rid, h, "a", live()))
		ended := mustEnd(t, p, payment.End{ID: rid, Owner: "a", State: payment.Paid, Result: []byte("r")})
		for _, owner := range []string{"a", "b"} {
			got := mustClaim(t, p, claimOf(rid, h, owner, live()))
			if got.Owned || got.Resumed || got.Holder != nil || !reflect.DeepEqual(got.Self, ended) {
				t.Errorf("Claim by %s of a final request = %+v, want %+v unowned", owner, got, ended)
			}
		}
		if r := mustGet(t, p, rid); !reflect.DeepEqual(r, ended) {
			t.Errorf("Claim changed a final request: %+v", r)
		}
	})
}

// A request recorded by Begin (an older build) is claimed with its invoice.
func TestPayClaimOfARequestBegun(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		p := l.Payments()
		rid, h := id(t), newHash(t)
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: rid, Task: "pay", Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
		c := claimOf(rid, h, "a", live())
		got := mustClaim(t, p, c)
		if !got.Owned || got.Self.State != payment.Sending || got.Self.Hash != h || got.Self.PaymentRequest != c.PaymentRequest ||
			string(got.Self.Key) != "k" {
			t.Errorf("Claim of a begun request = %+v", got)
		}
	})
}

// Many claimers of one hash at once, through two handles on one database
// (as two instances): exactly one holds it, and every other waits for it.
func TestPayClaimConcurrent(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		ps := []payment.Store{s.open(t).Payments(), s.open(t).Payments()}
		for round := 0; round < 5; round++ {
			h := newHash(t)
			const n = 16
			ids := make([]string, n)
			for i := range ids {
				ids[i] = id(t)
			}
			got := make([]payment.Claimed, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := ps[i%2].Claim(ctx, claimOf(ids[i], h, fmt.Sprint("owner", i), live()))
					if err != nil {
						t.Error(err)
					}
					got[i] = c
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			winner := ""
			for i, c := range got {
				if c.Self.State == payment.Sending {
					if winner != "" {
						t.Fatalf("round %d: %s and %s both sending", round, winner[:8], ids[i][:8])
					}
					winner = ids[i]
				}
			}
			if winner == "" {
				t.Fatalf("round %d: no claimer holds the hash", round)
			}
			for i, c := range got {
				if !c.Owned {
					t.Errorf("round %d: claimer %d does not own its request", round, i)
				}
				if ids[i] != winner && (c.Self.State != payment.Waiting || c.Holder == nil || c.Holder.ID != winner) {
					t.Errorf("round %d: claimer %d = %+v, want waiting for %s", round, i, c, winner[:8])
				}
			}
			if r, err := ps[0].Holder(ctx, h); err != nil || r.ID != winner {
				t.Errorf("round %d: Holder = %+v, %v", round, r, err)
			}
		}
	})
}

// Many owners claiming one request at once: exactly one owns it.
func TestPayClaimConcurrentOwners(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		ps := []payment.Store{s.open(t).Payments(), s.open(t).Payments()}
		for round := 0; round < 5; round++ {
			rid, h := id(t), newHash(t)
			const n = 16
			owned := make([]bool, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := ps[i%2].Claim(ctx, claimOf(rid, h, fmt.Sprint("owner", i), live()))
					if err != nil {
						t.Error(err)
					}
					owned[i] = c.Owned
				}()
			}
			wg.Wait()
			var owners []int
			for i, o := range owned {
				if o {
					owners = append(owners, i)
				}
			}
			if len(owners) != 1 {
				t.Fatalf("round %d: claimers %v all own the request", round, owners)
			}
			if r := mustGet(t, ps[0], rid); r.Owner != fmt.Sprint("owner", owners[0]) {
				t.Errorf("round %d: owner %q, want owner%d", round, r.Owner, owners[0])
			}
		}
	})
}

func TestPayTake(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		p := l.Payments()
		held, left := id(t), id(t)
		mustClaim(t, p, claimOf(held, newHash(t), "a", live()))
		before := mustGet(t, p, held)
		if r, ok, err := p.Take(ctx, held, "b", live()); err != nil || ok || !reflect.DeepEqual(r, before) {
			t.Errorf("Take of a live lease = %+v, %v, %v; want refused", r, ok, err)
		}
		if r := mustGet(t, p, held); !reflect.DeepEqual(r, before) {
			t.Errorf("a refused Take changed %+v to %+v", before, r)
		}
		later := live().Add(time.Minute)
		if r, ok, err := p.Take(ctx, held, "a", later); err != nil || !ok || r.Owner != "a" || !r.LeaseUntil.Equal(later) {
			t.Errorf("Take by its owner = %+v, %v, %v", r, ok, err)
		}

		mustClaim(t, p, claimOf(left, newHash(t), "a", expired()))
		until := live()
		r, ok, err := p.Take(ctx, left, "b", until)
		if err != nil || !ok || r.Owner != "b" || !r.LeaseUntil.Equal(until) || r.State != payment.Sending || r.Final {
			t.Fatalf("Take of an expired lease = %+v, %v, %v", r, ok, err)
		}
		taken := mustGet(t, p, left)

		// Its former owner can neither end it nor claim its hash again.
		if _, err := p.End(ctx, payment.End{ID: left, Owner: "a", State: payment.Unpaid, Result: []byte("stale")}); !errors.Is(err, payment.ErrLeaseLost) {
			t.Errorf("End by the owner taken from: %v, want ErrLeaseLost", err)
		}
		if _, err := p.Retry(ctx, left, "a"); !errors.Is(err, payment.ErrLeaseLost) {
			t.Errorf("Retry by the owner taken from: %v, want ErrLeaseLost", err)
		}
		if r := mustGet(t, p, left); !reflect.DeepEqual(r, taken) {
			t.Errorf("a stale owner changed %+v to %+v", taken, r)
		}
		ended := mustEnd(t, p, payment.End{ID: left, Owner: "b", State: payment.Paid, Result: []byte("r")})

		if r, ok, err := p.Take(ctx, left, "c", live()); err != nil || ok || !reflect.DeepEqual(r, ended) {
			t.Errorf("Take of a final request = %+v, %v, %v", r, ok, err)
		}
		if _, _, err := p.Take(ctx, id(t), "c", live()); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("Take of an unknown request: %v", err)
		}
		other := id(t)
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: other, Task: "create"}); err != nil {
			t.Fatal(err)
		}
		if r, ok, err := p.Take(ctx, other, "c", live()); err != nil || ok || r.Owner != "" {
			t.Errorf("Take of a create request = %+v, %v, %v", r, ok, err)
		}
	})
}

// Many owners taking over one request whose lease ended, at once and
// through two handles on one database: exactly one owns it, by Take or by
// Claim.
func TestPayTakeoverConcurrent(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		ps := []payment.Store{s.open(t).Payments(), s.open(t).Payments()}
		for round := 0; round < 10; round++ {
			rid, h := id(t), newHash(t)
			mustClaim(t, ps[0], claimOf(rid, h, "gone", expired()))
			const n = 16
			owned := make([]bool, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					owner := fmt.Sprint("owner", i)
					if i%4 < 2 {
						_, ok, err := ps[i%2].Take(ctx, rid, owner, live())
						if err != nil {
							t.Error(err)
						}
						owned[i] = ok
						return
					}
					c, err := ps[i%2].Claim(ctx, claimOf(rid, h, owner, live()))
					if err != nil {
						t.Error(err)
					}
					owned[i] = c.Owned
				}()
			}
			wg.Wait()
			var owners []int
			for i, o := range owned {
				if o {
					owners = append(owners, i)
				}
			}
			if len(owners) != 1 {
				t.Fatalf("round %d: %v all took the request", round, owners)
			}
			if r := mustGet(t, ps[0], rid); r.Owner != fmt.Sprint("owner", owners[0]) {
				t.Errorf("round %d: owner %q, want owner%d", round, r.Owner, owners[0])
			}
		}
	})
}

func TestPayEnd(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		paid, unpaid, waiting := id(t), id(t), id(t)
		h := newHash(t)
		mustClaim(t, p, claimOf(paid, h, "a", live()))

		// Releasing a hash that may have been paid is refused.
		before := mustGet(t, p, paid)
		if _, err := p.End(ctx, payment.End{ID: paid, Owner: "a", State: payment.Waiting, Result: []byte("r")}); err == nil || errors.Is(err, payment.ErrLeaseLost) {
			t.Errorf("End of a sending request as Waiting: %v", err)
		}
		for _, bad := range []payment.End{
			{ID: paid, Owner: "a", State: payment.Paid},                            // no result
			{ID: paid, State: payment.Paid, Result: []byte("r")},                   // no owner
			{ID: paid, Owner: "a", State: payment.Sending, Result: []byte("r")},    // not an outcome
			{ID: paid, Owner: "a", State: payment.State("x"), Result: []byte("r")}, // nor this
		} {
			if _, err := p.End(ctx, bad); err == nil {
				t.Errorf("End(%+v) succeeded", bad)
			}
		}
		if r := mustGet(t, p, paid); !reflect.DeepEqual(r, before) {
			t.Errorf("a refused End changed %+v to %+v", before, r)
		}

		r := mustEnd(t, p, payment.End{ID: paid, Owner: "a", State: payment.Paid, Result: []byte("first")})
		if !r.Final || string(r.Result) != "first" || r.State != payment.Paid || r.Owner != "" || !r.LeaseUntil.IsZero() || r.Hash != h {
			t.Errorf("ended = %+v", r)
		}
		if got := mustGet(t, p, paid); !reflect.DeepEqual(got, r) {
			t.Errorf("Get after End = %+v, want %+v", got, r)
		}
		// The first result stays the answer, whoever ends it again.
		for _, e := range []payment.End{
			{ID: paid, Owner: "a", State: payment.Unpaid, Result: []byte("second")},
			{ID: paid, Owner: "b", State: payment.Unpaid, Result: []byte("third")},
		} {
			if again := mustEnd(t, p, e); !reflect.DeepEqual(again, r) {
				t.Errorf("End again by %s = %+v, want the first %+v", e.Owner, again, r)
			}
		}
		if holder, err := p.Holder(ctx, h); err != nil || holder.ID != paid {
			t.Errorf("Holder of a paid hash = %+v, %v", holder, err)
		}

		h2 := newHash(t)
		mustClaim(t, p, claimOf(unpaid, h2, "a", live()))
		if r := mustEnd(t, p, payment.End{ID: unpaid, Owner: "a", State: payment.Unpaid, Result: []byte("failed")}); r.State != payment.Unpaid || !r.Final {
			t.Errorf("ended unpaid = %+v", r)
		}
		if _, err := p.Holder(ctx, h2); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("Holder after an unpaid end: %v", err)
		}

		// A request that never held its hash keeps holding nothing.
		mustClaim(t, p, claimOf(waiting, h, "a", live()))
		if r := mustEnd(t, p, payment.End{ID: waiting, Owner: "a", State: payment.Paid, Result: []byte("r")}); r.State != payment.Waiting || !r.Final {
			t.Errorf("ended waiter = %+v", r)
		}
		if holder, err := p.Holder(ctx, h); err != nil || holder.ID != paid {
			t.Errorf("Holder after a waiter ended = %+v, %v", holder, err)
		}

		if _, err := p.End(ctx, payment.End{ID: id(t), Owner: "a", State: payment.Unpaid, Result: []byte("r")}); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("End of an unknown request: %v", err)
		}
	})
}

func TestPayRetryRefusals(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		h := newHash(t)
		holder, waiter := id(t), id(t)
		mustClaim(t, p, claimOf(holder, h, "a", live()))
		mustClaim(t, p, claimOf(waiter, h, "b", live()))
		if _, err := p.Retry(ctx, waiter, "a"); !errors.Is(err, payment.ErrLeaseLost) {
			t.Errorf("Retry by another owner: %v", err)
		}
		if _, err := p.Retry(ctx, waiter, ""); err == nil {
			t.Error("Retry without an owner succeeded")
		}
		if got, err := p.Retry(ctx, holder, "a"); err != nil || !got.Owned || !got.Resumed || got.Self.State != payment.Sending {
			t.Errorf("Retry by the holder = %+v, %v", got, err)
		}
		mustEnd(t, p, payment.End{ID: waiter, Owner: "b", State: payment.Waiting, Result: []byte("r")})
		if _, err := p.Retry(ctx, waiter, "b"); !errors.Is(err, payment.ErrLeaseLost) {
			t.Errorf("Retry of a final request: %v", err)
		}
		if _, err := p.Retry(ctx, id(t), "b"); !errors.Is(err, payment.ErrNotRecorded) {
			t.Errorf("Retry of an unknown request: %v", err)
		}
	})
}

func TestPayRenew(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		p := l.Payments()
		h := newHash(t)
		sending, waiting, final, others := id(t), id(t), id(t), id(t)
		soon := expired()
		mustClaim(t, p, claimOf(sending, h, "a", soon))
		mustClaim(t, p, claimOf(waiting, h, "a", soon))
		mustClaim(t, p, claimOf(final, newHash(t), "a", soon))
		ended := mustEnd(t, p, payment.End{ID: final, Owner: "a", State: payment.Unpaid, Result: []byte("r")})
		mustClaim(t, p, claimOf(others, newHash(t), "b", soon))
		before := mustGet(t, p, others)
		// Finished by the older method, which leaves the owner as it was.
		finished := id(t)
		mustClaim(t, p, claimOf(finished, newHash(t), "a", soon))
		if _, err := l.Finish(ctx, ledger.Entry{ID: finished, Result: []byte("r")}); err != nil {
			t.Fatal(err)
		}
		finishedBefore := mustGet(t, p, finished)

		until := live()
		if err := p.Renew(ctx, "a", until); err != nil {
			t.Fatal(err)
		}
		for _, rid := range []string{sending, waiting} {
			if r := mustGet(t, p, rid); r.Owner != "a" || !r.LeaseUntil.Equal(until) {
				t.Errorf("renewed %+v, want a's lease until %v", r, until)
			}
		}
		if r := mustGet(t, p, final); !reflect.DeepEqual(r, ended) {
			t.Errorf("Renew changed a final request: %+v", r)
		}
		if r := mustGet(t, p, finished); !reflect.DeepEqual(r, finishedBefore) {
			t.Errorf("Renew changed a request finished: %+v", r)
		}
		if r := mustGet(t, p, others); !reflect.DeepEqual(r, before) {
			t.Errorf("Renew changed another owner's request: %+v", r)
		}
		orphans, err := p.Orphans(ctx, time.Now())
		if err != nil || len(orphans) != 1 || orphans[0].ID != others {
			t.Errorf("Orphans after a's renewal = %v, %v; want only b's", idsOf(orphans), err)
		}
		if err := p.Renew(ctx, "", until); err == nil {
			t.Error("Renew without an owner succeeded")
		}
	})
}

func idsOf(rs []payment.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID[:8])
	}
	return out
}

func TestPayOrphans(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		l := s.open(t)
		p := l.Payments()
		h := newHash(t)
		// Created in this order, a millisecond apart at least.
		older, waiting, begun, liveID, finalID, create := id(t), id(t), id(t), id(t), id(t), id(t)
		step := func() { time.Sleep(2 * time.Millisecond) }
		mustClaim(t, p, claimOf(older, h, "a", expired()))
		step()
		mustClaim(t, p, claimOf(waiting, h, "b", expired()))
		step()
		// Recorded without its payment request (an older build): it goes on
		// when Kafka delivers it again, never as an orphan.
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: begun, Task: "pay"}); err != nil {
			t.Fatal(err)
		}
		step()
		mustClaim(t, p, claimOf(liveID, newHash(t), "c", live()))
		step()
		mustClaim(t, p, claimOf(finalID, newHash(t), "c", expired()))
		mustEnd(t, p, payment.End{ID: finalID, Owner: "c", State: payment.Unpaid, Result: []byte("r")})
		if _, _, err := l.Begin(ctx, ledger.Entry{ID: create, Task: "create"}); err != nil {
			t.Fatal(err)
		}

		got, err := p.Orphans(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want := []string{older[:8], waiting[:8]}
		if !reflect.DeepEqual(idsOf(got), want) {
			t.Fatalf("Orphans = %v, want %v", idsOf(got), want)
		}
		if got[0].State != payment.Sending || got[0].Owner != "a" || got[1].State != payment.Waiting {
			t.Errorf("orphans read as %+v", got)
		}
		// A lease is an orphan's only once it has ended.
		until := mustGet(t, p, older).LeaseUntil
		if got, err := p.Orphans(ctx, until); err != nil || len(got) != 0 {
			t.Errorf("Orphans at the end of the oldest lease = %v, %v; want none", idsOf(got), err)
		}
	})
}

// A request ended unpublished keeps its owner's lease until Published; its
// owner stopping before that leaves it to Orphans, and to Take.
func TestPayEndUnpublished(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		rid, h := id(t), newHash(t)
		mustClaim(t, p, claimOf(rid, h, "a", live()))
		r := mustEnd(t, p, payment.End{ID: rid, Owner: "a", State: payment.Paid, Result: []byte("r1"), Unpublished: true})
		if !r.Final || !r.Unpublished || r.Owner != "a" || r.State != payment.Paid {
			t.Fatalf("ended unpublished: %+v", r)
		}
		if err := p.Renew(ctx, "a", expired()); err != nil {
			t.Fatal(err)
		}
		orphans, err := p.Orphans(ctx, time.Now())
		if err != nil || len(orphans) != 1 || orphans[0].ID != rid || !orphans[0].Unpublished {
			t.Fatalf("Orphans after the owner stopped: %+v, %v; want the unpublished request", orphans, err)
		}
		taken, ok, err := p.Take(ctx, rid, "b", live())
		if err != nil || !ok || taken.Owner != "b" || string(taken.Result) != "r1" {
			t.Fatalf("Take of an unpublished result: %+v, %v, %v", taken, ok, err)
		}
		if err := p.Published(ctx, rid); err != nil {
			t.Fatal(err)
		}
		r = mustGet(t, p, rid)
		if r.Unpublished || r.Owner != "" || !r.LeaseUntil.IsZero() || string(r.Result) != "r1" {
			t.Fatalf("after Published: %+v", r)
		}
		if orphans, _ := p.Orphans(ctx, time.Now().Add(time.Hour)); len(orphans) != 0 {
			t.Fatalf("Orphans lists a published request: %+v", orphans)
		}
		if _, ok, _ := p.Take(ctx, rid, "c", live()); ok {
			t.Fatal("Take of a published final request succeeded")
		}
	})
}

// Waiters lists the requests waiting for a hash, not its holder and not
// those answered.
func TestPayWaiters(t *testing.T) {
	each(t, func(t *testing.T, s store) {
		p := s.open(t).Payments()
		h, other := newHash(t), newHash(t)
		holder, w1, w2, done := id(t), id(t), id(t), id(t)
		mustClaim(t, p, claimOf(holder, h, "a", live()))
		mustClaim(t, p, claimOf(w1, h, "a", live()))
		mustClaim(t, p, claimOf(w2, h, "b", live()))
		mustClaim(t, p, claimOf(done, h, "a", live()))
		mustEnd(t, p, payment.End{ID: done, Owner: "a", State: payment.Waiting, Result: []byte("already paid")})
		mustClaim(t, p, claimOf(id(t), other, "a", live()))
		ws, err := p.Waiters(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, w := range ws {
			got[w.ID] = true
		}
		if len(ws) != 2 || !got[w1] || !got[w2] {
			t.Fatalf("Waiters = %+v, want %s and %s", ws, w1[:8], w2[:8])
		}
	})
}
