package ledger

import (
	"context"
	"database/sql"
	"fmt"
)

// MigrateTo brings the schema of db, "sqlite" or "postgres", to version v
// only, as an older build would have left it.
func MigrateTo(ctx context.Context, db *sql.DB, dialectName string, v int) error {
	d := map[string]dialect{"sqlite": sqliteDialect, "postgres": postgresDialect}[dialectName]
	if d.name == "" {
		return fmt.Errorf("no dialect %q", dialectName)
	}
	ms, err := load(d.name)
	if err != nil {
		return err
	}
	return apply(ctx, db, d, ms[:v])
}
