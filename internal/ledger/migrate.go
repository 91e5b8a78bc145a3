package ledger

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrations embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// load returns the dialect's migrations in version order. A file is named
// NNNN_what.sql; versions start at 1 and have no gaps.
func load(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	files, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		num, _, ok := strings.Cut(f.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(f.Name(), ".sql") {
			return nil, fmt.Errorf("ledger: migration file %s is not NNNN_name.sql", f.Name())
		}
		b, err := fs.ReadFile(migrations, path.Join(dir, f.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: f.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("ledger: migration %s: expected version %d", m.name, i+1)
		}
	}
	return out, nil
}

// migrate brings the schema to the newest version this build knows, in one
// transaction: applied at start, idempotent, and, through the dialect's
// lock, safe when several instances start at once. A schema newer than the
// build is refused rather than used.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	ms, err := load(d.name)
	if err != nil {
		return err
	}
	return apply(ctx, db, d, ms)
}

// apply brings the schema to the last of ms.
func apply(ctx context.Context, db *sql.DB, d dialect, ms []migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger: migrating: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if d.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, d.lockMigrations); err != nil {
			return fmt.Errorf("ledger: taking the migration lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("ledger: creating schema_version: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("ledger: reading schema_version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("ledger: the schema is at version %d, newer than this build's %d; run a newer build", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)`), m.version, m.name, now()); err != nil {
			return fmt.Errorf("ledger: recording migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger: migrating: %w", err)
	}
	return nil
}

// SchemaVersion is the newest schema version this build knows.
func SchemaVersion() int {
	ms, err := load("sqlite")
	if err != nil {
		panic(err)
	}
	return len(ms)
}
