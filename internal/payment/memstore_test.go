package payment_test

import (
	"context"
	"sort"
	"sync"
	"time"

	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
)

// memStore keeps payment.Store's contract in memory, for the Owner's tests;
// the ledger's own tests hold the SQL stores to the same contract.
type memStore struct {
	mu   sync.Mutex
	recs map[string]*payment.Record
	now  func() time.Time
	ends int
	// frozen owners' renewals fail, as a paused process's never come.
	frozen map[string]bool
}

// errDown is a renewal that never comes, as a paused owner's.
type errDown struct{}

func (errDown) Error() string { return "ledger down" }

func newMemStore() *memStore {
	return &memStore{recs: make(map[string]*payment.Record), now: time.Now}
}

func (m *memStore) get(id string) (payment.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[id]
	if !ok {
		return payment.Record{}, false
	}
	return *r, true
}

func (m *memStore) holderLocked(hash lightning.Hash) *payment.Record {
	for _, r := range m.recs {
		if r.Hash == hash && (r.State == payment.Sending || r.State == payment.Paid) {
			return r
		}
	}
	return nil
}

func (m *memStore) Claim(_ context.Context, c payment.Claim) (payment.Claimed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	r := m.recs[c.ID]
	if r == nil {
		r = &payment.Record{ID: c.ID, Hash: c.Hash, PaymentRequest: c.PaymentRequest, Key: c.Key, Headers: c.Headers, CreatedAt: now}
		m.recs[c.ID] = r
	}
	if r.Final || (r.Owner != c.Owner && r.LeaseUntil.After(now)) {
		return payment.Claimed{Self: *r}, nil
	}
	r.Owner, r.LeaseUntil, r.UpdatedAt = c.Owner, c.Until, now
	return m.claimLocked(r), nil
}

func (m *memStore) claimLocked(r *payment.Record) payment.Claimed {
	if r.State == payment.Sending {
		return payment.Claimed{Self: *r, Owned: true, Resumed: true}
	}
	if h := m.holderLocked(r.Hash); h != nil && h.ID != r.ID {
		hc := *h
		return payment.Claimed{Self: *r, Owned: true, Holder: &hc}
	}
	r.State = payment.Sending
	return payment.Claimed{Self: *r, Owned: true}
}

func (m *memStore) Take(_ context.Context, id, owner string, until time.Time) (payment.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs[id]
	if r == nil {
		return payment.Record{}, false, payment.ErrNotRecorded
	}
	if (r.Final && !r.Unpublished) || (r.Owner != owner && r.LeaseUntil.After(m.now())) {
		return *r, false, nil
	}
	r.Owner, r.LeaseUntil = owner, until
	return *r, true, nil
}

func (m *memStore) Retry(_ context.Context, id, owner string) (payment.Claimed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs[id]
	if r == nil {
		return payment.Claimed{}, payment.ErrNotRecorded
	}
	if r.Owner != owner {
		return payment.Claimed{}, payment.ErrLeaseLost
	}
	if r.Final {
		return payment.Claimed{Self: *r}, nil
	}
	return m.claimLocked(r), nil
}

func (m *memStore) End(_ context.Context, e payment.End) (payment.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs[e.ID]
	if r == nil {
		return payment.Record{}, payment.ErrNotRecorded
	}
	if r.Final {
		return *r, nil
	}
	if r.Owner != e.Owner {
		return payment.Record{}, payment.ErrLeaseLost
	}
	m.ends++
	r.Final, r.Result, r.Unpublished, r.UpdatedAt = true, e.Result, e.Unpublished, m.now()
	if r.State == payment.Sending {
		r.State = e.State
	}
	if !e.Unpublished {
		r.Owner, r.LeaseUntil = "", time.Time{}
	}
	return *r, nil
}

func (m *memStore) Published(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[id]; r != nil {
		r.Unpublished, r.Owner, r.LeaseUntil = false, "", time.Time{}
	}
	return nil
}

func (m *memStore) freeze(owner string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen == nil {
		m.frozen = make(map[string]bool)
	}
	m.frozen[owner] = true
}

func (m *memStore) Renew(_ context.Context, owner string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen[owner] {
		return errDown{}
	}
	for _, r := range m.recs {
		if r.Owner == owner && (!r.Final || r.Unpublished) {
			r.LeaseUntil = until
		}
	}
	return nil
}

func (m *memStore) Get(_ context.Context, id string) (payment.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[id]; r != nil {
		return *r, nil
	}
	return payment.Record{}, payment.ErrNotRecorded
}

func (m *memStore) Holder(_ context.Context, hash lightning.Hash) (payment.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.holderLocked(hash); h != nil {
		return *h, nil
	}
	return payment.Record{}, payment.ErrNotRecorded
}

func (m *memStore) Waiters(_ context.Context, hash lightning.Hash) ([]payment.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []payment.Record
	for _, r := range m.recs {
		if r.Hash == hash && r.State == payment.Waiting && !r.Final {
			out = append(out, *r)
		}
	}
	return out, nil
}

func (m *memStore) Orphans(_ context.Context, now time.Time) ([]payment.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []payment.Record
	for _, r := range m.recs {
		if (!r.Final || r.Unpublished) && r.LeaseUntil.Before(now) {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}
