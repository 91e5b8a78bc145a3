package regtest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fakeTool "builds" by writing executable files, counting its builds.
func fakeTool(builds *int, fail bool) tool {
	return tool{
		name: "fake", version: "v1", bins: []string{"a", "b"}, stamp: "tags: x\n",
		build: func(_ context.Context, _, out string, log io.Writer) error {
			*builds++
			if fail {
				os.WriteFile(filepath.Join(out, "a"), []byte("half"), 0o755)
				io.WriteString(log, "compile error\n")
				return errors.New("exit status 1")
			}
			for _, b := range []string{"a", "b"} {
				if err := os.WriteFile(filepath.Join(out, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func TestEnsureBuildsOnceAndCaches(t *testing.T) {
	cache := t.TempDir()
	// A killed earlier build's leftovers must not survive or be mistaken for a cache.
	if err := os.Mkdir(filepath.Join(cache, ".build-fake-v1-123"), 0o755); err != nil {
		t.Fatal(err)
	}
	var builds int
	tl := fakeTool(&builds, false)
	dir, err := tl.ensure(t.Context(), "go", cache, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "fake-v1"); dir != want {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	if _, err := tl.ensure(t.Context(), "go", cache, io.Discard); err != nil {
		t.Fatal(err)
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1 (the second call should use the cache)", builds)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, ".build-*")); len(left) > 0 {
		t.Errorf("temporary build directories left: %v", left)
	}

	tl.stamp = "tags: y\n" // other build tags: the cached binaries don't count
	if _, err := tl.ensure(t.Context(), "go", cache, io.Discard); err != nil {
		t.Fatal(err)
	}
	if builds != 2 {
		t.Errorf("built %d times after the tags changed, want 2", builds)
	}
}

func TestEnsureFailedBuildLeavesNothing(t *testing.T) {
	cache := t.TempDir()
	var builds int
	_, err := fakeTool(&builds, true).ensure(t.Context(), "go", cache, io.Discard)
	if err == nil {
		t.Fatal("ensure succeeded with a failing build")
	}
	t.Log(err)
	if _, err := os.Stat(filepath.Join(cache, "fake-v1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build left the cache directory (%v)", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, ".build-*")); len(left) > 0 {
		t.Errorf("temporary build directories left: %v", left)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"/bin/lncli", "--rpcserver=127.0.0.1:1", "--macaroonpath=/tmp/a b/admin.macaroon", "it's"})
	want := `/bin/lncli --rpcserver=127.0.0.1:1 '--macaroonpath=/tmp/a b/admin.macaroon' 'it'\''s'`
	if got != want {
		t.Errorf("shellJoin = %s\nwant        %s", got, want)
	}
}
