package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
)

// payments is payment.Store over the requests table. A request's lease is
// live while its lease_until (Unix ms) is after now; 0 is no lease (a pay
// request recorded by Begin or by an older build): any owner may take it.
// Only pay requests (task "pay") are leased; the lease index holds those
// not final, the requests in flight.
type payments struct{ s *store }

var _ payment.Store = payments{}

// Payments returns the ledger's payment.Store.
func (s *store) Payments() payment.Store { return payments{s} }

const payTask = "pay"

const recordColumns = `id, COALESCE(payment_hash, ''), COALESCE(payment_request, ''), state, pay_state, COALESCE(owner, ''), lease_until,
	unpublished, record_key, record_headers, result, created_at, updated_at`

const (
	qRecord       = `SELECT ` + recordColumns + ` FROM requests WHERE id = $1`
	qLockRecord   = qRecord + forUpdate
	qRecordHolder = `SELECT ` + recordColumns + ` FROM requests WHERE payment_hash = $1 AND pay_state IN ('sending', 'paid')`
	qPayClaim     = `INSERT INTO requests (id, task, state, payment_hash, payment_request, pay_state, owner, lease_until, record_key, record_headers, created_at, updated_at)
		VALUES ($1, $2, 'pending', $3, $4, '', $5, $6, $7, $8, $9, $9) ON CONFLICT (id) DO NOTHING`
	// qPayLease leases a request recorded before, giving it the invoice if
	// it was recorded without (by Begin).
	qPayLease = `UPDATE requests SET owner = $2, lease_until = $3, updated_at = $4,
			payment_hash = COALESCE(payment_hash, $5), payment_request = COALESCE(payment_request, $6)
		WHERE id = $1 AND state = 'pending'`
	qPayTake = `UPDATE requests SET owner = $2, lease_until = $3, updated_at = $4
		WHERE id = $1 AND (state = 'pending' OR unpublished = 1) AND task = 'pay'`
	qPaySend = `UPDATE requests SET pay_state = 'sending', updated_at = $2 WHERE id = $1 AND state = 'pending' AND pay_state = ''`
	// qPayEnd ends a request; one ended unpublished ($6 = 1) keeps its
	// owner and lease until Published.
	qPayEnd = `UPDATE requests SET state = 'final', result = $3, pay_state = $4, unpublished = $6, updated_at = $5,
			owner = CASE WHEN $6 = 1 THEN owner ELSE NULL END, lease_until = CASE WHEN $6 = 1 THEN lease_until ELSE 0 END
		WHERE id = $1 AND owner = $2 AND state = 'pending'`
	qPayPublished = `UPDATE requests SET unpublished = 0, owner = NULL, lease_until = 0, updated_at = $2 WHERE id = $1 AND unpublished = 1`
	qPayRenew     = `UPDATE requests SET lease_until = $2, updated_at = $3
		WHERE owner = $1 AND (state = 'pending' OR unpublished = 1) AND task = 'pay'`
	qPayOrphans = `SELECT ` + recordColumns + ` FROM requests
		WHERE (state = 'pending' OR unpublished = 1) AND task = 'pay' AND lease_until < $1 AND payment_request IS NOT NULL
		ORDER BY created_at, id`
	qPayWaiters = `SELECT ` + recordColumns + ` FROM requests
		WHERE payment_hash = $1 AND state = 'pending' AND pay_state = '' AND task = 'pay' ORDER BY created_at, id`
)

func scanRecord(row scanner) (payment.Record, error) {
	var (
		r                              payment.Record
		hash, state, payState, headers string
		key, result                    []byte
		lease, unpub, created, updated int64
	)
	err := row.Scan(&r.ID, &hash, &r.PaymentRequest, &state, &payState, &r.Owner, &lease, &unpub, &key, &headers, &result, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return payment.Record{}, payment.ErrNotRecorded
	}
	if err != nil {
		return payment.Record{}, err
	}
	if hash != "" {
		if r.Hash, err = lightning.ParseHash(hash); err != nil {
			return payment.Record{}, fmt.Errorf("ledger: payment hash of request %s: %w", r.ID, err)
		}
	}
	r.State, r.Final = payment.State(payState), state == string(Final)
	r.Key, r.Result, r.Unpublished = key, result, unpub == 1
	if lease != 0 {
		r.LeaseUntil = time.UnixMilli(lease)
	}
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	var hs []Header
	if err := json.Unmarshal([]byte(headers), &hs); err != nil {
		return payment.Record{}, fmt.Errorf("ledger: headers of request %s: %w", r.ID, err)
	}
	for _, h := range hs {
		r.Headers = append(r.Headers, payment.Header(h))
	}
	return r, nil
}

func recordHeaders(hs []payment.Header) []Header {
	out := make([]Header, len(hs))
	for i, h := range hs {
		out[i] = Header(h)
	}
	return out
}

// leasedToOther reports whether r is owned by another owner than owner
// under a lease live at t (Unix ms).
func leasedToOther(r payment.Record, owner string, t int64) bool {
	return r.Owner != "" && r.Owner != owner && !r.LeaseUntil.IsZero() && r.LeaseUntil.UnixMilli() > t
}

func (p payments) record(ctx context.Context, tx *sql.Tx, id string) (payment.Record, error) {
	return scanRecord(p.s.queryRow(ctx, tx, qRecord, id))
}

// lock reads request id in tx and keeps others from changing it until tx
// ends.
func (p payments) lock(ctx context.Context, tx *sql.Tx, id string) (payment.Record, error) {
	return scanRecord(p.s.queryRow(ctx, tx, qLockRecord, id))
}

func (p payments) holder(ctx context.Context, tx *sql.Tx, hash lightning.Hash) (payment.Record, error) {
	return scanRecord(p.s.queryRow(ctx, tx, qRecordHolder, hash.String()))
}

func (p payments) Claim(ctx context.Context, c payment.Claim) (payment.Claimed, error) {
	switch {
	case c.Task != payTask:
		return payment.Claimed{}, fmt.Errorf("ledger: claiming request %s: task %q is not %q", c.ID, c.Task, payTask)
	case c.Owner == "" || c.Until.IsZero():
		return payment.Claimed{}, fmt.Errorf("ledger: claiming request %s without an owner and a lease", c.ID)
	case c.Hash == lightning.Hash{}:
		return payment.Claimed{}, fmt.Errorf("ledger: claiming request %s without a payment hash", c.ID)
	}
	var out payment.Claimed
	err := p.s.writeHolding(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		out, err = p.claim(ctx, tx, c)
		return err
	})
	if err != nil {
		return payment.Claimed{}, fmt.Errorf("ledger: claiming payment %s for request %s: %w", c.Hash, c.ID, err)
	}
	return out, nil
}

func (p payments) claim(ctx context.Context, tx *sql.Tx, c payment.Claim) (payment.Claimed, error) {
	t := now()
	res, err := p.s.exec(ctx, tx, qPayClaim, c.ID, c.Task, c.Hash.String(), nullString(c.PaymentRequest),
		c.Owner, c.Until.UnixMilli(), nullable(c.Key), encodeHeaders(recordHeaders(c.Headers)), t)
	if err != nil {
		return payment.Claimed{}, err
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return payment.Claimed{}, err
	}
	self, err := p.lock(ctx, tx, c.ID)
	if err != nil {
		return payment.Claimed{}, err
	}
	if inserted == 0 {
		if self.Final || leasedToOther(self, c.Owner, t) {
			return payment.Claimed{Self: self}, nil
		}
		if _, err := p.s.exec(ctx, tx, qPayLease, c.ID, c.Owner, c.Until.UnixMilli(), t,
			c.Hash.String(), nullString(c.PaymentRequest)); err != nil {
			return payment.Claimed{}, err
		}
		if self, err = p.record(ctx, tx, c.ID); err != nil {
			return payment.Claimed{}, err
		}
	}
	return p.hold(ctx, tx, self, t)
}

// hold makes self, locked in tx and owned by the caller, the holder of its
// hash if it is Waiting and no other request holds the hash.
func (p payments) hold(ctx context.Context, tx *sql.Tx, self payment.Record, t int64) (payment.Claimed, error) {
	out := payment.Claimed{Self: self, Owned: true}
	switch self.State {
	case payment.Sending:
		out.Resumed = true
		return out, nil
	case payment.Waiting:
	default:
		// Paid or Unpaid: its payment ended (an older build recorded that
		// before the result); End stores the result.
		return out, nil
	}
	if self.Hash == (lightning.Hash{}) {
		return payment.Claimed{}, fmt.Errorf("request %s has no payment hash to hold", self.ID)
	}
	holder, err := p.holder(ctx, tx, self.Hash)
	switch {
	case err == nil:
		out.Holder = &holder
		return out, nil
	case !errors.Is(err, payment.ErrNotRecorded):
		return payment.Claimed{}, err
	}
	if _, err := p.s.exec(ctx, tx, qPaySend, self.ID, t); err != nil {
		return payment.Claimed{}, err
	}
	out.Self, err = p.record(ctx, tx, self.ID)
	return out, err
}

func (p payments) Take(ctx context.Context, id, owner string, until time.Time) (rec payment.Record, ok bool, err error) {
	if owner == "" || until.IsZero() {
		return payment.Record{}, false, fmt.Errorf("ledger: taking request %s without an owner and a lease", id)
	}
	var fail error // the answer, when nothing is written
	err = p.s.write(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		ok, fail = false, nil
		t := now()
		if rec, err = p.lock(ctx, tx, id); err != nil {
			return unlessNotRecorded(err, &fail)
		}
		if (rec.Final && !rec.Unpublished) || leasedToOther(rec, owner, t) {
			return nil
		}
		res, err := p.s.exec(ctx, tx, qPayTake, id, owner, until.UnixMilli(), t)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 { // n == 0: not a pay request
			return err
		}
		ok = true
		rec, err = p.record(ctx, tx, id)
		return err
	})
	switch {
	case err != nil:
		return payment.Record{}, false, fmt.Errorf("ledger: taking request %s: %w", id, err)
	case fail != nil:
		return payment.Record{}, false, fail
	}
	return rec, ok, nil
}

func (p payments) Retry(ctx context.Context, id, owner string) (payment.Claimed, error) {
	if owner == "" {
		return payment.Claimed{}, fmt.Errorf("ledger: claiming the payment of request %s again without its owner", id)
	}
	var (
		out  payment.Claimed
		fail error // the answer, when nothing is written
	)
	err := p.s.writeHolding(ctx, func(ctx context.Context, tx *sql.Tx) error {
		out, fail = payment.Claimed{}, nil
		self, err := p.lock(ctx, tx, id)
		if err != nil {
			return unlessNotRecorded(err, &fail)
		}
		if self.Final || self.Owner != owner {
			fail = fmt.Errorf("ledger: claiming the payment of request %s again for %s: %w", id, owner, payment.ErrLeaseLost)
			return nil
		}
		out, err = p.hold(ctx, tx, self, now())
		return err
	})
	switch {
	case err != nil:
		return payment.Claimed{}, fmt.Errorf("ledger: claiming the payment of request %s again: %w", id, err)
	case fail != nil:
		return payment.Claimed{}, fail
	}
	return out, nil
}

// unlessNotRecorded returns err, or nil with *fail set to it when it is
// ErrNotRecorded: an answer rather than a failed write, which would make
// SQLite's group commit run the writes of its group again.
func unlessNotRecorded(err error, fail *error) error {
	if errors.Is(err, payment.ErrNotRecorded) {
		*fail = err
		return nil
	}
	return err
}

func (p payments) End(ctx context.Context, e payment.End) (payment.Record, error) {
	switch {
	case e.Result == nil:
		return payment.Record{}, fmt.Errorf("ledger: ending request %s without a result", e.ID)
	case e.Owner == "":
		return payment.Record{}, fmt.Errorf("ledger: ending request %s without its owner", e.ID)
	case e.State != payment.Waiting && e.State != payment.Paid && e.State != payment.Unpaid:
		return payment.Record{}, fmt.Errorf("ledger: ending request %s: %q is not an outcome", e.ID, e.State)
	}
	var (
		stored payment.Record
		fail   error // the answer, when nothing is written
	)
	err := p.s.write(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		fail = nil
		if stored, err = p.lock(ctx, tx, e.ID); err != nil {
			return unlessNotRecorded(err, &fail)
		}
		if stored.Final {
			return nil
		}
		if stored.Owner != e.Owner {
			fail = fmt.Errorf("ledger: storing the result of request %s for %s: %w", e.ID, e.Owner, payment.ErrLeaseLost)
			return nil
		}
		outcome := stored.State // Waiting holds nothing; Paid and Unpaid ended before
		if stored.State == payment.Sending {
			if e.State == payment.Waiting {
				// Releasing the hash of a payment that may have been sent
				// would let another request pay it again.
				fail = fmt.Errorf("ledger: ending request %s: it holds its payment hash: its outcome must be %q or %q", e.ID, payment.Paid, payment.Unpaid)
				return nil
			}
			outcome = e.State
		}
		unpublished := 0
		if e.Unpublished {
			unpublished = 1
		}
		if _, err := p.s.exec(ctx, tx, qPayEnd, e.ID, e.Owner, e.Result, string(outcome), now(), unpublished); err != nil {
			return err
		}
		stored, err = p.record(ctx, tx, e.ID)
		return err
	})
	switch {
	case err != nil:
		return payment.Record{}, fmt.Errorf("ledger: storing the result of request %s: %w", e.ID, err)
	case fail != nil:
		return payment.Record{}, fail
	}
	return stored, nil
}

func (p payments) Renew(ctx context.Context, owner string, until time.Time) error {
	if owner == "" {
		return errors.New("ledger: renewing leases without an owner")
	}
	err := p.s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := p.s.exec(ctx, tx, qPayRenew, owner, until.UnixMilli(), now())
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: renewing the leases of %s: %w", owner, err)
	}
	return nil
}

func (p payments) Published(ctx context.Context, id string) error {
	err := p.s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := p.s.exec(ctx, tx, qPayPublished, id, now())
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: recording the published result of request %s: %w", id, err)
	}
	return nil
}

func (p payments) Get(ctx context.Context, id string) (payment.Record, error) {
	r, err := p.record(ctx, nil, id)
	if err != nil && !errors.Is(err, payment.ErrNotRecorded) {
		err = fmt.Errorf("ledger: reading request %s: %w", id, err)
	}
	return r, err
}

func (p payments) Holder(ctx context.Context, hash lightning.Hash) (payment.Record, error) {
	r, err := p.holder(ctx, nil, hash)
	if err != nil && !errors.Is(err, payment.ErrNotRecorded) {
		err = fmt.Errorf("ledger: reading the holder of payment %s: %w", hash, err)
	}
	return r, err
}

func (p payments) Orphans(ctx context.Context, now time.Time) ([]payment.Record, error) {
	return p.list(ctx, "orphaned pay requests", qPayOrphans, now.UnixMilli())
}

func (p payments) Waiters(ctx context.Context, hash lightning.Hash) ([]payment.Record, error) {
	return p.list(ctx, "pay requests waiting for "+hash.String(), qPayWaiters, hash.String())
}

// list runs a prepared query for records.
func (p payments) list(ctx context.Context, what, query string, args ...any) ([]payment.Record, error) {
	st, err := p.s.prepared(query)
	if err != nil {
		return nil, fmt.Errorf("ledger: listing %s: %w", what, err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: listing %s: %w", what, err)
	}
	defer rows.Close()
	var out []payment.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: listing %s: %w", what, err)
	}
	return out, nil
}
