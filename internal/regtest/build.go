package regtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"lightning-service/internal/proc"
)

// Pinned versions of the node software the harness runs.
const (
	BtcdVersion = "v0.24.2"
	LndVersion  = "v0.20.1-beta"
)

// LndBuildTags are the build tags lnd is compiled with: the sub-servers the
// service and the tests call (router, invoices) and those lncli expects,
// and lowscrypt, lnd's own test tag that weakens only the wallet's
// password-hashing: creating and unlocking three wallets at full scrypt
// strength took 20 of Start's 26 seconds on two cores.
const LndBuildTags = "signrpc walletrpc chainrpc invoicesrpc routerrpc peersrpc lowscrypt"

// Binaries are the paths of the executables a Network runs.
type Binaries struct {
	Btcd, Btcctl, Lnd, Lncli string
}

// BuildOptions configure Build.
type BuildOptions struct {
	// CacheDir holds the built binaries, one directory per tool and version.
	// Default: DefaultCacheDir().
	CacheDir string

	// Progress receives one line per long step; nil discards them.
	Progress io.Writer
}

// DefaultCacheDir is $XDG_CACHE_HOME/lightning-service/bin, or
// ~/.cache/lightning-service/bin when XDG_CACHE_HOME is unset.
func DefaultCacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory (set XDG_CACHE_HOME): %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "lightning-service", "bin"), nil
}

// Build returns the pinned btcd, btcctl, lnd and lncli, building them with
// the Go toolchain on PATH the first time (lnd takes about 9 minutes on two
// cores) and reusing the cached binaries afterwards. Concurrent callers,
// including other processes, wait for one build instead of repeating it.
func Build(ctx context.Context, opts BuildOptions) (Binaries, error) {
	cache := opts.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return Binaries{}, err
		}
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return Binaries{}, fmt.Errorf("building the regtest binaries needs the go command on PATH: %w", err)
	}

	btcd := tool{
		name: "btcd", version: BtcdVersion, bins: []string{"btcd", "btcctl"},
		estimate: "about a minute", build: buildBtcd,
	}
	lnd := tool{
		name: "lnd", version: LndVersion, bins: []string{"lnd", "lncli"},
		estimate: "about 9 minutes", build: buildLnd, stamp: "tags: " + LndBuildTags + "\n",
	}
	btcdDir, err := btcd.ensure(ctx, goBin, cache, progress)
	if err != nil {
		return Binaries{}, err
	}
	lndDir, err := lnd.ensure(ctx, goBin, cache, progress)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{
		Btcd:   filepath.Join(btcdDir, "btcd"),
		Btcctl: filepath.Join(btcdDir, "btcctl"),
		Lnd:    filepath.Join(lndDir, "lnd"),
		Lncli:  filepath.Join(lndDir, "lncli"),
	}, nil
}

type tool struct {
	name, version string
	bins          []string
	estimate      string
	build         func(ctx context.Context, goBin, out string, log io.Writer) error
	// stamp, if set, is written to stampFile with the binaries; a cached
	// directory whose stamp differs (other build tags) is rebuilt.
	stamp string
}

const stampFile = "BUILD"

// ensure returns the cache directory holding t's binaries, building them if
// absent. The build goes to a temporary directory renamed into place at the
// end, so a killed build never leaves a directory that looks complete.
func (t tool) ensure(ctx context.Context, goBin, cache string, progress io.Writer) (string, error) {
	final := filepath.Join(cache, t.name+"-"+t.version)
	if t.complete(final) {
		return final, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("creating the binary cache %s: %w", cache, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "."+t.name+"-"+t.version+".lock"), func() {
		fmt.Fprintf(progress, "waiting for another process that is building %s %s…\n", t.name, t.version)
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if t.complete(final) { // built by the process we waited for
		return final, nil
	}

	// Under the lock, any earlier temporary directory is a killed build's.
	stale, _ := filepath.Glob(filepath.Join(cache, ".build-"+t.name+"-"+t.version+"-*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}
	tmp, err := os.MkdirTemp(cache, ".build-"+t.name+"-"+t.version+"-")
	if err != nil {
		return "", fmt.Errorf("creating a build directory in %s: %w", cache, err)
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintf(progress, "building %s %s (first time: %s)…\n", t.name, t.version, t.estimate)
	start := time.Now()
	stopTicker := tick(progress, t.name, start)
	var log bytes.Buffer
	err = t.build(ctx, goBin, tmp, &log)
	stopTicker()
	if err != nil {
		return "", fmt.Errorf("building %s %s: %w\n%s", t.name, t.version, err, proc.LastLines(log.String(), 30))
	}
	if !t.built(tmp) {
		return "", fmt.Errorf("building %s %s: the build succeeded but did not produce %s\n%s",
			t.name, t.version, strings.Join(t.bins, ", "), proc.LastLines(log.String(), 30))
	}
	if t.stamp != "" {
		if err := os.WriteFile(filepath.Join(tmp, stampFile), []byte(t.stamp), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	// A leftover incomplete directory would make the rename fail.
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("replacing the incomplete %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("moving the built %s into the cache: %w", t.name, err)
	}
	fmt.Fprintf(progress, "built %s %s in %s\n", t.name, t.version, time.Since(start).Round(time.Second))
	return final, nil
}

// complete reports whether dir holds t's binaries, built as t says.
func (t tool) complete(dir string) bool {
	if t.stamp != "" {
		if b, err := os.ReadFile(filepath.Join(dir, stampFile)); err != nil || string(b) != t.stamp {
			return false
		}
	}
	return t.built(dir)
}

// built reports whether dir holds t's executables.
func (t tool) built(dir string) bool {
	for _, b := range t.bins {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
			return false
		}
	}
	return true
}

// tick reports every minute that a long build is still running, so a
// newcomer doesn't take the silence for a hang.
func tick(w io.Writer, name string, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "  still building %s (%s so far)…\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// buildBtcd installs btcd and btcctl into out. btcd's go.mod has no replace
// directives, so "go install pkg@version" works.
func buildBtcd(ctx context.Context, goBin, out string, log io.Writer) error {
	return runGo(ctx, goBin, out, []string{"GOBIN=" + out}, log,
		"install",
		"github.com/btcsuite/btcd@"+BtcdVersion,
		"github.com/btcsuite/btcd/cmd/btcctl@"+BtcdVersion)
}

// buildLnd builds lnd and lncli into out. "go install lnd@version" is
// refused because lnd's go.mod has replace directives, so this downloads
// the module and builds inside it, where those directives apply.
func buildLnd(ctx context.Context, goBin, out string, log io.Writer) error {
	var js bytes.Buffer
	if err := runGo(ctx, goBin, out, nil, io.MultiWriter(log, &js),
		"mod", "download", "-json", "github.com/lightningnetwork/lnd@"+LndVersion); err != nil {
		return fmt.Errorf("downloading the lnd module: %w", err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(js.Bytes(), &mod); err != nil {
		return fmt.Errorf("reading go mod download's answer: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return fmt.Errorf("downloading the lnd module: %s", mod.Error)
	}
	return runGo(ctx, goBin, mod.Dir, nil, log,
		"build", "-tags", LndBuildTags, "-o", out+string(filepath.Separator), "./cmd/lnd", "./cmd/lncli")
}

// runGo runs the go command in dir. GOFLAGS is cleared because a caller's
// -mod=vendor or -mod=mod would break building inside the read-only module
// cache (its go.sum is complete, so the default -mod=readonly works), and
// GOWORK=off keeps a go.work above dir out of it.
func runGo(ctx context.Context, goBin, dir string, env []string, log io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOFLAGS=", "GOWORK=off"), env...)
	cmd.Stdout = log
	cmd.Stderr = log
	// Interrupt lets the go command stop its compilers; kill it if it lingers.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		return err
	}
	return nil
}
