package depcheck

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "lightning-service"

// harnesses are our packages for tests and development only, besides those
// whose name ends in "test" (regtest, kafkatest, ledgertest, lightningtest,
// wiretest, …), which are all harnesses too.
var harnesses = []string{"bench", "e2e", "faultproxy", "proc"}

// testOnly are packages, and modules, made for tests. The embedded broker of
// internal/kafka is franz-go's kfake, and it stays: `serve` with
// LIGHTNING_KAFKA_BROKERS empty starts it, a documented setting of the
// shipped binary (the sandbox runs the service that way), so the binary
// needs kfake; kfakeImporter is the one package allowed to import it.
var testOnly = []string{
	"testing",
	"net/http/httptest",
	"github.com/stretchr/testify",
	"pgregory.net/rapid",
	"github.com/ory/dockertest",
	"github.com/fergusstrange/embedded-postgres",
	"github.com/lightningnetwork/lnd/lntest",
	"github.com/golang/mock",
	"go.uber.org/mock",
	"github.com/twmb/franz-go/pkg/kfake",
}

const (
	kfake         = "github.com/twmb/franz-go/pkg/kfake"
	kfakeImporter = module + "/internal/kafka"
)

// lnd is the prefix of lnd's modules. Its packages import testify, rapid,
// dockertest and its own lntest outside their tests, so linking lnrpc links
// those, which is lnd's doing and not ours to change; the walk for test-only
// packages does not enter lnd's packages, and a test-only package that we
// import directly, lnd's or not, is still found.
const lnd = "github.com/lightningnetwork/lnd"

var (
	sqlDrivers = []string{"modernc.org/sqlite", "github.com/jackc/pgx"}
	franzGo    = []string{"github.com/twmb/franz-go"}
)

// What ships runs the service and calls it; the harnesses, which build lnd,
// start brokers and download jars, are linked by cmd/lightning-dev only.
func TestShippedBinaryLinksNoHarness(t *testing.T) {
	g := load(t, "cmd/lightning-service")
	forbid(t, g, module+"/cmd/lightning-service", "", isHarness)
}

// Nor does our code bring test libraries into the binary (kfake aside, above).
func TestShippedBinaryLinksNoTestOnlyPackage(t *testing.T) {
	g := load(t, "cmd/lightning-service")
	bin := module + "/cmd/lightning-service"
	kfakeFromKafka := slices.Equal(g.importers(kfake, bin, lnd), []string{kfakeImporter})
	forbid(t, g, bin, lnd, func(p string) bool {
		return within(p, testOnly) && !(within(p, []string{kfake}) && kfakeFromKafka)
	})
	var fromLnd []string
	for p := range g.reach(bin, "") {
		for _, m := range testOnly {
			if within(p, []string{m}) && m != kfake && !slices.Contains(fromLnd, m) {
				fromLnd = append(fromLnd, m)
			}
		}
	}
	slices.Sort(fromLnd)
	t.Logf("test-only code lnd's packages link outside their tests (not ours to change): %s", strings.Join(fromLnd, ", "))
}

// A task runs on the node and the ledger it is given: which database stores
// the ledger, and how requests arrive, are not its concern.
func TestTaskLinksNoSQLDriverNorKafka(t *testing.T) {
	g := load(t, "internal/task")
	forbid(t, g, module+"/internal/task", "", func(p string) bool { return within(p, slices.Concat(sqlDrivers, franzGo)) })
}

// The owner of payments reaches the ledger through the narrow Store it
// defines; which database implements it is not its concern.
func TestPaymentLinksNoSQLDriverNorKafka(t *testing.T) {
	g := load(t, "internal/payment")
	forbid(t, g, module+"/internal/payment", "", func(p string) bool { return within(p, slices.Concat(sqlDrivers, franzGo)) })
}

// The service takes a delivery and returns what to publish; only the Kafka
// adapter knows records.
func TestServiceLinksNoKafka(t *testing.T) {
	g := load(t, "internal/service")
	forbid(t, g, module+"/internal/service", "", func(p string) bool { return within(p, franzGo) })
}

// forbid fails for each package that root links, without walking into
// stop, and bad says it must not: only where the import chain first meets
// one, not for each package behind it.
func forbid(t *testing.T, g graph, root, stop string, bad func(string) bool) {
	t.Helper()
	parents := g.reach(root, stop)
	for _, p := range slices.Sorted(maps.Keys(parents)) {
		if bad(p) && !bad(parents[p]) {
			t.Errorf("%s links %s: %s", root, p, chain(parents, p))
		}
	}
}

// graph maps each package to the packages it imports.
type graph map[string][]string

// load lists the dependencies of the package at dir (relative to the module
// root) as the go command that would build it sees them: no build tags and
// GOFLAGS cleared, so a -tags in the caller's environment cannot change the
// answer.
func load(t *testing.T, dir string) graph {
	t.Helper()
	goBin := goCommand(t)
	cmd := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./"+dir)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps ./%s: %v\n%s", dir, err, ee.Stderr)
		}
		t.Fatalf("go list -deps ./%s: %v", dir, err)
	}
	g := graph{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	if len(g) == 0 {
		t.Fatalf("go list -deps ./%s listed nothing", dir)
	}
	return g
}

// reach returns every package root links, each with the package that
// first brought it in (root with itself). Packages under stop are listed but
// not walked into.
func (g graph) reach(root, stop string) map[string]string {
	parents := map[string]string{root: root}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if stop != "" && within(p, []string{stop}) {
			continue
		}
		for _, q := range g[p] {
			if _, seen := parents[q]; !seen {
				parents[q] = p
				queue = append(queue, q)
			}
		}
	}
	return parents
}

// chain is the import chain from reach's root to p.
func chain(parents map[string]string, p string) string {
	links := []string{p}
	for parents[p] != p {
		p = parents[p]
		links = append(links, p)
	}
	slices.Reverse(links)
	return strings.Join(links, " → ")
}

// importers are the packages, among those root reaches without entering
// stop, that import p directly.
func (g graph) importers(p, root, stop string) []string {
	var ps []string
	for q := range g.reach(root, stop) {
		if stop != "" && within(q, []string{stop}) {
			continue
		}
		if slices.Contains(g[q], p) {
			ps = append(ps, q)
		}
	}
	slices.Sort(ps)
	return ps
}

func isHarness(p string) bool {
	rest, ours := strings.CutPrefix(p, module+"/")
	if !ours {
		return false
	}
	for _, elem := range strings.Split(rest, "/") {
		if strings.HasSuffix(elem, "test") || slices.Contains(harnesses, elem) {
			return true
		}
	}
	return false
}

// within reports whether p is one of prefixes or a package below one.
func within(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// goCommand is the go binary of the toolchain `go env GOROOT` names: the
// one that builds the binary, even where PATH's go only selects it.
func goCommand(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import rules are read with the go command: %v", err)
	}
	out, err := exec.Command(path, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
}

// moduleRoot is the directory of go.mod above the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
