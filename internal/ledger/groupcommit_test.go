package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func openTestSQLite(t *testing.T) *store {
	t.Helper()
	l, err := OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*store)
}

func rowCount(t *testing.T, s *store, task string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM requests WHERE task = ?1`, task).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Writes submitted while a commit is under way share the next transaction;
// each returns only once it is committed, and a failing one takes nothing
// of the others with it.
func TestGroupCommit(t *testing.T) {
	s := openTestSQLite(t)
	ctx := context.Background()
	insert := func(ctx context.Context, tx *sql.Tx, id string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO requests (id, task, state, pay_state, record_headers, created_at, updated_at)
			VALUES (?1, 'group', 'pending', '', '[]', 0, 0)`, id)
		return err
	}

	// The first write holds the writer until the others are queued.
	held, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			close(held)
			<-release
			return insert(ctx, tx, "first")
		})
	}()
	<-held

	const n = 40
	var (
		mu  sync.Mutex
		txs = map[*sql.Tx]int{}
		wg  sync.WaitGroup
	)
	errs := make([]error, n)
	queued := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			queued <- struct{}{}
			errs[i] = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
				mu.Lock()
				txs[tx]++
				mu.Unlock()
				if err := insert(ctx, tx, fmt.Sprint("w", i)); err != nil {
					return err
				}
				if i%10 == 3 {
					return errors.New("refused") // its row must not stay
				}
				return nil
			})
		}()
	}
	for range n {
		<-queued
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	for i, err := range errs {
		if (i%10 == 3) != (err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if got, want := rowCount(t, s, "group"), 1+n-n/10; got != want {
		t.Errorf("%d rows committed, want %d", got, want)
	}
	// Gathered while the first was held: far fewer transactions than writes
	// (each failing write costs its group one more run, and goroutines not
	// yet at the channel when the writer looked may make a few more groups).
	if len(txs) > n/4 {
		t.Errorf("%d writes took %d transactions", n, len(txs))
	}
	t.Logf("%d writes in %d transactions", n, len(txs))
}

// A write whose caller has gone before its group starts writes nothing.
func TestGroupCommitCanceledWrite(t *testing.T) {
	s := openTestSQLite(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.write(ctx, func(context.Context, *sql.Tx) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("write with a canceled context: %v, ran %v", err, ran)
	}
}

// After Close, writes fail at once instead of waiting for a writer that is
// gone.
func TestGroupCommitClosed(t *testing.T) {
	l, err := OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, _, err := l.Begin(context.Background(), Entry{ID: "x", Task: "pay"}); err == nil {
		t.Error("Begin after Close succeeded")
	}
}

// BenchmarkFinishConcurrent stores results from many goroutines at once, as
// a busy service's workers do: the group commit's figure (ns/op is per
// stored result, every one of them synced to disk).
func BenchmarkFinishConcurrent(b *testing.B) {
	l, err := OpenSQLite(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	result := make([]byte, 600) // about a decode's sealed result
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("%064x", n.Add(1))
			if _, err := l.Finish(context.Background(), Entry{ID: id, Task: "decode", Result: result}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
