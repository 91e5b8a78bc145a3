package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// migrationLockKey is the advisory lock instances take while migrating
// ("ln-ledg" in ASCII).
const migrationLockKey = 0x6c6e2d6c656467

var postgresDialect = dialect{
	name:   "postgres",
	rebind: func(q string) string { return q },
	isUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
	lockMigrations: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey),
}

// OpenPostgres opens the ledger in the PostgreSQL database at url
// (postgres://user:password@host:port/db?sslmode=…), which several
// instances may share.
func OpenPostgres(ctx context.Context, url string) (Ledger, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("ledger: LIGHTNING_DATABASE_URL: %w", err)
	}
	db.SetMaxOpenConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: connecting to PostgreSQL: %w", err)
	}
	if err := migrate(ctx, db, postgresDialect); err != nil {
		db.Close()
		return nil, err
	}
	// PostgreSQL gathers concurrent commits into one WAL flush itself; each
	// write is a transaction of its own.
	s := &store{db: db, d: postgresDialect}
	s.write = s.inTx
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
