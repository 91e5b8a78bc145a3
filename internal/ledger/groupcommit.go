package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// maxGroup bounds the writes one commit carries.
const maxGroup = 256

var errClosed = errors.New("ledger: closed")

// groupCommit is SQLite's write path: one goroutine runs every write, and
// the writes submitted while a commit is being synced to disk go into the
// next transaction together, each in a savepoint of its own, so that one
// sync makes many of them durable. A write returns only once its
// transaction is committed; one that fails is rolled back to its savepoint
// and leaves the others of its group alone.
type groupCommit struct {
	db   *sql.DB
	ops  chan *groupOp
	stop chan struct{}
	done chan struct{}
}

type groupOp struct {
	ctx context.Context
	fn  func(ctx context.Context, tx *sql.Tx) error
	err chan error
}

func newGroupCommit(db *sql.DB) *groupCommit {
	g := &groupCommit{db: db, ops: make(chan *groupOp), stop: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// write submits fn and waits until its group is committed. Once taken into
// a group it is waited for even if ctx ends, so that the caller never
// mistakes a committed write for one that did not happen.
func (g *groupCommit) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	op := &groupOp{ctx: ctx, fn: fn, err: make(chan error, 1)}
	select {
	case g.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stop:
		return errClosed
	}
	return <-op.err
}

// close stops the writer once the group in hand is committed.
func (g *groupCommit) close() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

func (g *groupCommit) run() {
	defer close(g.done)
	for {
		var group []*groupOp
		select {
		case op := <-g.ops:
			group = append(group, op)
		case <-g.stop:
			return
		}
	gather:
		for len(group) < maxGroup {
			select {
			case op := <-g.ops:
				group = append(group, op)
			default:
				break gather
			}
		}
		errs := g.commit(group)
		for i, op := range group {
			op.err <- errs[i]
		}
	}
}

// commit runs a group in one transaction and returns each write's error.
func (g *groupCommit) commit(group []*groupOp) []error {
	errs := make([]error, len(group))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	// The statements run to completion whatever the callers' contexts:
	// a transaction half done for one of them would fail the others.
	ctx := context.Background()
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for i, op := range group {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err // its caller has gone; nothing of it is written
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
			return fail(fmt.Errorf("savepoint: %w", err))
		}
		if err := op.fn(ctx, tx); err != nil {
			errs[i] = err
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO write"); err != nil {
				return fail(fmt.Errorf("rolling back to a savepoint: %w", err))
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE write"); err != nil {
			return fail(fmt.Errorf("releasing a savepoint: %w", err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return errs
}
