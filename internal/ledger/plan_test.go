package ledger

import (
	"context"
	"strings"
	"testing"
)

// The queries that run on every lease renewal and recovery pass read the
// lease index of the requests in flight, never the whole table. (SQLite's
// plan, as a ledger that was never analysed has it; PostgreSQL's depends on
// its statistics.)
func TestLeaseQueriesUseTheLeaseIndex(t *testing.T) {
	s := openTestSQLite(t)
	for _, c := range []struct {
		query string
		args  []any
		want  string
	}{
		{qPayOrphans, []any{int64(1)}, "SEARCH requests USING INDEX requests_leases (lease_until<?)"},
		{qPayRenew, []any{"owner", int64(1), int64(1)}, "USING INDEX requests_leases"},
	} {
		rows, err := s.db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+s.d.rebind(c.query), c.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if got := strings.Join(plan, "; "); !strings.Contains(got, c.want) {
			t.Errorf("plan of %q:\n%s\nwant %s", c.query, got, c.want)
		}
	}
}
