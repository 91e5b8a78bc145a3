package ledger_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"lightning-service/internal/ledger"
	"lightning-service/internal/ledger/ledgertest"
	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
)

// v1 is a ledger left at schema version 1 by an older build.
type v1 struct {
	name    string
	dialect string
	db      func(t *testing.T) *sql.DB
	open    func(t *testing.T) ledger.Ledger
}

func v1Ledgers(t *testing.T) []v1 {
	dir := t.TempDir()
	out := []v1{{
		name:    "sqlite",
		dialect: "sqlite",
		db: func(t *testing.T) *sql.DB {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, ledger.SQLiteFile))
			if err != nil {
				t.Fatal(err)
			}
			return db
		},
		open: func(t *testing.T) ledger.Ledger {
			l, err := ledger.OpenSQLite(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
	}}
	if base := os.Getenv(ledgertest.DatabaseURLEnv); base != "" {
		u := ledgertest.FreshSchema(t, base)
		out = append(out, v1{
			name:    "postgres",
			dialect: "postgres",
			db: func(t *testing.T) *sql.DB {
				db, err := sql.Open("pgx", u)
				if err != nil {
					t.Fatal(err)
				}
				return db
			},
			open: func(t *testing.T) ledger.Ledger {
				l, err := ledger.OpenPostgres(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				return l
			},
		})
	}
	return out
}

// A ledger at version 1 with a request paying: once migrated, the request
// holds its hash as Sending.
func TestMigrationFromVersion1(t *testing.T) {
	for _, c := range v1Ledgers(t) {
		t.Run(c.name, func(t *testing.T) {
			db := c.db(t)
			defer db.Close()
			if err := ledger.MigrateTo(ctx, db, c.dialect, 1); err != nil {
				t.Fatal(err)
			}
			paying, paid, h, h2 := id(t), id(t), randomHex(t, 32), randomHex(t, 32)
			for _, q := range []string{
				fmt.Sprintf(`INSERT INTO requests (id, task, state, payment_hash, pay_state, record_key, record_headers, created_at, updated_at)
					VALUES ('%s', 'pay', 'pending', '%s', 'paying', NULL, '[{"k":"h","v":"AQI="}]', 1, 1)`, paying, h),
				fmt.Sprintf(`INSERT INTO requests (id, task, state, payment_hash, pay_state, record_headers, result, created_at, updated_at)
					VALUES ('%s', 'pay', 'final', '%s', 'paid', '[]', 'r', 2, 2)`, paid, h2),
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}

			l := c.open(t)
			defer l.Close()
			var stored string
			if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT pay_state FROM requests WHERE id = '%s'`, paying)).Scan(&stored); err != nil || stored != "sending" {
				t.Errorf("migrated paying request's pay_state %q, %v; want sending", stored, err)
			}
			if e, err := l.Get(ctx, paying); err != nil || e.PayState != ledger.Paying || e.State != ledger.Pending {
				t.Errorf("migrated paying request = %+v, %v", e, err)
			}
			if e, err := l.Holder(ctx, h); err != nil || e.ID != paying {
				t.Errorf("Holder of the migrated hash = %+v, %v", e, err)
			}
			if e, err := l.Holder(ctx, h2); err != nil || e.ID != paid || e.PayState != ledger.Paid {
				t.Errorf("Holder of the paid hash = %+v, %v", e, err)
			}
			if es, err := l.Unfinished(ctx); err != nil || len(es) != 1 || es[0].ID != paying {
				t.Errorf("Unfinished after migrating = %+v, %v", es, err)
			}
			if claim, err := l.ClaimPayment(ctx, id(t), h); err != nil || claim.Holder.ID != paying {
				t.Errorf("ClaimPayment of the migrated hash = %+v, %v", claim, err)
			}

			// The payment.Store reads it as Sending, holding its hash, and
			// leased to no one.
			p := l.Payments()
			hash, err := lightning.ParseHash(h)
			if err != nil {
				t.Fatal(err)
			}
			r := mustGet(t, p, paying)
			if r.State != payment.Sending || r.Final || r.Hash != hash || r.Owner != "" || !r.LeaseUntil.IsZero() ||
				!reflect.DeepEqual(r.Headers, []payment.Header{{Key: "h", Value: []byte{1, 2}}}) {
				t.Errorf("migrated paying request = %+v", r)
			}
			if holder, err := p.Holder(ctx, hash); err != nil || holder.ID != paying {
				t.Errorf("Holder of the migrated hash = %+v, %v", holder, err)
			}
			// Recorded without its payment request, it is no orphan: it goes
			// on when Kafka delivers it again, as before.
			if got, err := p.Orphans(ctx, time.Now()); err != nil || len(got) != 0 {
				t.Errorf("Orphans after migrating = %v, %v; want none", idsOf(got), err)
			}
			if got := mustClaim(t, p, claimOf(id(t), hash, "a", live())); got.Self.State != payment.Waiting || got.Holder == nil || got.Holder.ID != paying {
				t.Errorf("Claim of the migrated hash = %+v", got)
			}
			if taken, ok, err := p.Take(ctx, paying, "a", live()); err != nil || !ok || taken.State != payment.Sending {
				t.Errorf("Take of the migrated request = %+v, %v, %v", taken, ok, err)
			}
			// The unique index covers the new name.
			if _, err := db.ExecContext(ctx, fmt.Sprintf(`INSERT INTO requests (id, task, state, payment_hash, pay_state, record_headers, created_at, updated_at)
				VALUES ('%s', 'pay', 'pending', '%s', 'sending', '[]', 3, 3)`, id(t), h)); err == nil {
				t.Error("a second request was stored sending the same hash")
			}
			var version int
			if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&version); err != nil || version != 2 || version != ledger.SchemaVersion() {
				t.Errorf("schema version %d, %v; want 2", version, err)
			}
		})
	}
}
