package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// store is the Ledger over database/sql; the dialect holds what differs
// between SQLite and PostgreSQL.
type store struct {
	db *sql.DB
	d  dialect
	// write runs fn in a transaction and returns once it is committed, or
	// with fn's error and nothing of fn's kept. Every change to the ledger
	// goes through it; reads outside it use db.
	write func(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error
	// closeWrites stops what write needs, if anything, before db closes.
	closeWrites func()

	stmts map[string]*sql.Stmt // by query as written, with $n placeholders
}

// inTx is write as one transaction of its own.
func (s *store) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

type dialect struct {
	name string
	// rebind turns the queries' $1-style placeholders into the driver's,
	// and drops a forUpdate the database has no use for.
	rebind func(q string) string
	// isUniqueViolation reports a unique-index violation.
	isUniqueViolation func(err error) bool
	// lockMigrations, run first in the migration transaction, keeps
	// instances starting at once from migrating together.
	lockMigrations string
}

var _ Ledger = (*store)(nil)

// forUpdate ends a query that locks the row it reads until the transaction
// ends, so that what a write decides from the row still holds when it
// commits (PostgreSQL). SQLite drops it: its write transaction holds the
// whole database already.
const forUpdate = ` FOR UPDATE`

var dollarParam = regexp.MustCompile(`\$(\d+)`)

// numbered rewrites $1 to ?1 (SQLite's numbered parameters).
func numbered(q string) string { return dollarParam.ReplaceAllString(q, "?$1") }

const columns = `id, task, state, COALESCE(payment_hash, ''), pay_state, record_key, record_headers, result, created_at, updated_at`

// The ledger's statements, with $n placeholders; each is prepared once when
// the ledger opens.
const (
	qBegin = `INSERT INTO requests (id, task, state, payment_hash, pay_state, record_key, record_headers, created_at, updated_at)
		VALUES ($1, $2, 'pending', $3, '', $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING`
	qGet    = `SELECT ` + columns + ` FROM requests WHERE id = $1`
	qHolder = `SELECT ` + columns + ` FROM requests WHERE payment_hash = $1 AND pay_state IN ('sending', 'paid')`
	qClaim  = `INSERT INTO requests (id, task, state, payment_hash, pay_state, created_at, updated_at)
		VALUES ($1, 'pay', 'pending', $2, 'sending', $3, $3)
		ON CONFLICT (id) DO UPDATE SET payment_hash = $2, pay_state = 'sending', updated_at = $3`
	qEndPayment = `UPDATE requests SET pay_state = $1, updated_at = $2 WHERE id = $3 AND pay_state = 'sending'`
	qFinish     = `INSERT INTO requests (id, task, state, payment_hash, pay_state, record_key, record_headers, result, created_at, updated_at)
		VALUES ($1, $2, 'final', $3, '', $4, $5, $6, $7, $7)
		ON CONFLICT (id) DO UPDATE SET state = 'final', result = $6, updated_at = $7,
			payment_hash = COALESCE(requests.payment_hash, $3)
		WHERE requests.state <> 'final'`
	qUnfinished = `SELECT ` + columns + ` FROM requests WHERE state = 'pending' OR pay_state = 'sending' ORDER BY created_at`
)

var statements = []string{qBegin, qGet, qHolder, qClaim, qEndPayment, qFinish, qUnfinished,
	qRecord, qLockRecord, qRecordHolder, qPayClaim, qPayLease, qPayTake, qPaySend, qPayEnd, qPayPublished, qPayRenew, qPayOrphans, qPayWaiters}

// prepare prepares every statement; the store's methods then only look
// them up, so no statement is prepared while a transaction holds a
// connection (with every connection held that would wait forever).
func (s *store) prepare(ctx context.Context) error {
	s.stmts = make(map[string]*sql.Stmt, len(statements))
	for _, q := range statements {
		st, err := s.db.PrepareContext(ctx, s.d.rebind(q))
		if err != nil {
			s.closeStatements()
			return fmt.Errorf("ledger: preparing %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

func (s *store) closeStatements() {
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = nil
}

// prepared returns the statement prepared for query.
func (s *store) prepared(query string) (*sql.Stmt, error) {
	if st := s.stmts[query]; st != nil {
		return st, nil
	}
	return nil, fmt.Errorf("ledger: statement not prepared: %q", query)
}

// exec runs a prepared statement in tx.
func (s *store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := s.prepared(query)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// queryRow runs a prepared query for one row in tx, or outside any
// transaction when tx is nil.
func (s *store) queryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) scanner {
	st, err := s.prepared(query)
	if err != nil {
		return errRow{err}
	}
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	return st.QueryRowContext(ctx, args...)
}

// errRow is a row whose query could not be prepared.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func now() int64 { return time.Now().UnixMilli() }

type scanner interface{ Scan(dest ...any) error }

func scanEntry(row scanner) (Entry, error) {
	var (
		e                Entry
		headers          string
		created, updated int64
		state, payState  string
		key, result      []byte
	)
	err := row.Scan(&e.ID, &e.Task, &state, &e.PaymentHash, &payState, &key, &headers, &result, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, err
	}
	e.State, e.PayState, e.Key, e.Result = State(state), PayState(payState), key, result
	e.CreatedAt, e.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	if err := json.Unmarshal([]byte(headers), &e.Headers); err != nil {
		return Entry{}, fmt.Errorf("ledger: headers of request %s: %w", e.ID, err)
	}
	return e, nil
}

func encodeHeaders(h []Header) string {
	if len(h) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(h) // strings and bytes always encode
	return string(b)
}

func nullable(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *store) Begin(ctx context.Context, e Entry) (stored Entry, created bool, err error) {
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		res, err := s.exec(ctx, tx, qBegin,
			e.ID, e.Task, nullString(e.PaymentHash), nullable(e.Key), encodeHeaders(e.Headers), t)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		created = n == 1
		stored, err = s.get(ctx, tx, e.ID)
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("ledger: recording request %s: %w", e.ID, err)
	}
	return stored, created, nil
}

func (s *store) Get(ctx context.Context, id string) (Entry, error) {
	e, err := s.get(ctx, nil, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("ledger: reading request %s: %w", id, err)
	}
	return e, err
}

func (s *store) get(ctx context.Context, tx *sql.Tx, id string) (Entry, error) {
	return scanEntry(s.queryRow(ctx, tx, qGet, id))
}

func (s *store) Holder(ctx context.Context, hash string) (Entry, error) {
	e, err := s.holder(ctx, nil, hash)
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("ledger: reading the holder of payment %s: %w", hash, err)
	}
	return e, err
}

func (s *store) holder(ctx context.Context, tx *sql.Tx, hash string) (Entry, error) {
	return scanEntry(s.queryRow(ctx, tx, qHolder, hash))
}

// writeHolding is write for a change that may make a request the holder of
// a payment hash. Two claimers of one hash in different processes may both
// find no holder; the unique index lets one through and the other runs
// again, finding the winner.
func (s *store) writeHolding(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.write(ctx, fn)
		if err == nil || !s.d.isUniqueViolation(err) || attempt == 10 {
			return err
		}
	}
}

func (s *store) ClaimPayment(ctx context.Context, id, hash string) (Claim, error) {
	var c Claim
	err := s.writeHolding(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		c, err = s.claim(ctx, tx, id, hash)
		return err
	})
	if err != nil {
		return Claim{}, fmt.Errorf("ledger: claiming payment %s for request %s: %w", hash, id, err)
	}
	return c, nil
}

func (s *store) claim(ctx context.Context, tx *sql.Tx, id, hash string) (Claim, error) {
	holder, err := s.holder(ctx, tx, hash)
	switch {
	case err == nil:
		return Claim{Holder: holder, Resumed: holder.ID == id}, nil
	case !errors.Is(err, ErrNotFound):
		return Claim{}, err
	}
	t := now()
	if _, err := s.exec(ctx, tx, qClaim, id, hash, t); err != nil {
		return Claim{}, err
	}
	e, err := s.get(ctx, tx, id)
	return Claim{Holder: e}, err
}

func (s *store) EndPayment(ctx context.Context, id string, paid bool) error {
	state := Unpaid
	if paid {
		state = Paid
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, qEndPayment, string(state), now(), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: ending the payment of request %s: %w", id, err)
	}
	return nil
}

func (s *store) Finish(ctx context.Context, e Entry) (stored Entry, err error) {
	if e.Result == nil {
		return Entry{}, fmt.Errorf("ledger: finishing request %s without a result", e.ID)
	}
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t := now()
		_, err := s.exec(ctx, tx, qFinish,
			e.ID, e.Task, nullString(e.PaymentHash), nullable(e.Key), encodeHeaders(e.Headers), e.Result, t)
		if err != nil {
			return err
		}
		stored, err = s.get(ctx, tx, e.ID)
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: storing the result of request %s: %w", e.ID, err)
	}
	return stored, nil
}

func (s *store) Unfinished(ctx context.Context) ([]Entry, error) {
	st, err := s.prepared(qUnfinished)
	if err != nil {
		return nil, fmt.Errorf("ledger: listing unfinished requests: %w", err)
	}
	rows, err := st.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger: listing unfinished requests: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *store) Close() error {
	if s.closeWrites != nil {
		s.closeWrites()
	}
	s.closeStatements()
	return s.db.Close()
}
