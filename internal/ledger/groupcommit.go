package ledger

import (
	"context"
	"database/sql"
	"errors"
)

// maxGroup bounds the writes one commit carries.
const maxGroup = 256

var errClosed = errors.New("ledger: closed")

// groupCommit is SQLite's write path: one goroutine runs every write, and
// the writes submitted while a commit is being synced to disk go into the
// next transaction together, so that one sync makes many of them durable. A
// write returns only once its transaction is committed; one that fails
// leaves nothing behind and takes none of the others of its group with it.
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

// commit runs a group in one transaction and returns each write's error. A
// write that fails rolls the transaction back; the group is then run again
// without it (writes may run more than once before one commit keeps them;
// what a write returns is from the run that was committed).
func (g *groupCommit) commit(group []*groupOp) []error {
	errs := make([]error, len(group))
	// The statements run to completion whatever the callers' contexts:
	// a transaction half done for one of them would fail the others.
	ctx := context.Background()
	for {
		failed, err := g.try(ctx, group, errs)
		if err != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = err
				}
			}
			return errs
		}
		if failed < 0 {
			return errs
		}
		// errs[failed] is set: run the others again.
	}
}

// try runs the group's writes not yet failed in one transaction and commits
// it. It returns the index of a write that failed (its error in errs, the
// transaction rolled back), or -1 once committed, or the error that failed
// the whole transaction.
func (g *groupCommit) try(ctx context.Context, group []*groupOp, errs []error) (failed int, err error) {
	tx, err := g.db.BeginTx(ctx, nil)
	if err != nil {
		return -1, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	for i, op := range group {
		if errs[i] != nil {
			continue
		}
		if err := op.ctx.Err(); err != nil {
			errs[i] = err // its caller has gone; nothing of it is written
			continue
		}
		if err := op.fn(ctx, tx); err != nil {
			errs[i] = err
			return i, nil
		}
	}
	return -1, tx.Commit()
}
