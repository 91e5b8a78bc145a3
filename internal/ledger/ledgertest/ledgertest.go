// Package ledgertest opens ledgers for tests: SQLite in a directory of the
// test's own, and PostgreSQL schemas of the test's own.
package ledgertest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the schema

	"lightning-service/internal/ledger"
)

// DatabaseURLEnv names the PostgreSQL database tests also run on;
// scripts/test starts a throwaway one and sets it.
const DatabaseURLEnv = "LIGHTNING_TEST_DATABASE_URL"

// OpenSQLite opens a ledger of the test's own, on SQLite, closed after the
// test.
func OpenSQLite(t testing.TB) ledger.Ledger {
	t.Helper()
	lg, err := ledger.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return lg
}

// FreshSchema creates a schema of the test's own in the PostgreSQL database
// at base and returns base with that schema as its search path; the schema
// is dropped after the test.
func FreshSchema(t testing.TB, base string) string {
	t.Helper()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "t_" + hex.EncodeToString(b)
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		t.Fatalf("%s: %v", DatabaseURLEnv, err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
