//go:build unix

package proc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 8 distinct positive ports", ports)
		}
		seen[p] = true
	}
}

func sh(t *testing.T, script string, onExit func(*os.ProcessState)) *Process {
	t.Helper()
	p, err := Start(Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script},
		LogPath: filepath.Join(t.TempDir(), "logs", "sh.log"), OnExit: onExit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestExitErrorCarriesTheOutput(t *testing.T) {
	p := sh(t, "echo starting; echo 'listen tcp: address already in use' >&2; exit 3", nil)
	<-p.Done()
	err := p.ExitError().Error()
	for _, want := range []string{"sh exited (exit status 3)", p.LogPath(), "starting", "address already in use"} {
		if !strings.Contains(err, want) {
			t.Errorf("ExitError %q lacks %q", err, want)
		}
	}
	if !p.AddrInUse() {
		t.Error("AddrInUse is false")
	}
	log, _ := os.ReadFile(p.LogPath())
	if !strings.Contains(string(log), "=== starting sh at ") || !strings.Contains(string(log), "starting\n") {
		t.Errorf("log file:\n%s", log)
	}
}

func TestStopTermsThenKills(t *testing.T) {
	p := sh(t, "sleep 60", nil)
	if err := p.Stop(context.Background(), 10*time.Second); err != nil {
		t.Errorf("a child that obeys SIGTERM: %v", err)
	}

	// A shell ignoring TERM, with a child of its own sleeping in the
	// foreground: only the kill after the grace ends it.
	var state *os.ProcessState
	p = sh(t, "trap '' TERM; echo ready; while :; do sleep 0.05; done", func(st *os.ProcessState) { state = st })
	for !strings.Contains(p.Tail(1), "ready") {
		time.Sleep(10 * time.Millisecond)
	}
	err := p.Stop(context.Background(), 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "was killed") {
		t.Errorf("Stop of a child ignoring SIGTERM: %v", err)
	}
	if state == nil || state.Success() {
		t.Errorf("OnExit had not run, or saw success, when Stop returned: %v", state)
	}
}

func TestTailIsBounded(t *testing.T) {
	r := newRing(100)
	for i := range 1000 {
		fmt.Fprintf(r, "%04d\n", i)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.bytes()), "\n"), "\n")
	if len(lines) < 15 || len(lines) > 20 || lines[len(lines)-1] != "0999" {
		t.Errorf("tail %q: want the last 100 bytes' whole lines", lines)
	}
	for _, l := range lines {
		if len(l) != 4 {
			t.Errorf("tail starts inside a line: %q", lines)
			break
		}
	}
	if got := LastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("LastLines = %q", got)
	}
}
