package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLiteFile is the ledger's file in the data directory.
const SQLiteFile = "ledger.sqlite"

var sqliteDialect = dialect{
	name:   "sqlite",
	rebind: func(q string) string { return numbered(strings.TrimSuffix(q, forUpdate)) },
	isUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
}

// OpenSQLite opens (creating it if need be) the ledger in dir, an SQLite
// database in pure Go. Every write is synced to disk before it returns;
// writes made at the same moment share one transaction and one sync.
func OpenSQLite(ctx context.Context, dir string) (Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: data directory: %w", err)
	}
	q := url.Values{}
	q.Set("_txlock", "immediate") // a transaction takes the write lock at once: no upgrade deadlocks
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + filepath.Join(dir, SQLiteFile) + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: opening %s: %w", filepath.Join(dir, SQLiteFile), err)
	}
	// One writer at a time is all SQLite allows: the group commit's one
	// goroutine writes, and reads run beside it on the other connections
	// (WAL lets them).
	db.SetMaxOpenConns(4)
	// Another process opening the same file at this moment (switching it to
	// WAL, recovering its journal) can make SQLite answer "busy" without
	// waiting; try again for a while.
	err = migrate(ctx, db, sqliteDialect)
	for deadline := time.Now().Add(10 * time.Second); isBusy(err) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		err = migrate(ctx, db, sqliteDialect)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w (ledger %s)", err, filepath.Join(dir, SQLiteFile))
	}
	s := &store{db: db, d: sqliteDialect}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	g := newGroupCommit(db)
	s.write, s.closeWrites = g.write, g.close
	return s, nil
}

func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}
