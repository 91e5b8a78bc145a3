// Package proc starts and stops the child processes of the test harnesses
// (btcd and lnd in regtest, the Kafka broker in kafkatest): each child's
// output goes to a log file and to a bounded in-memory tail for error
// messages, and it is stopped by its own PID, SIGTERM first.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Command describes a child to start.
type Command struct {
	// Name is what messages call the child: "btcd", "alice", "broker".
	Name string
	Path string
	Args []string
	// Dir is the child's working directory; empty means the caller's.
	Dir string
	// LogPath receives the child's stdout and stderr, appended after a line
	// saying when it started; its directory is created if missing.
	LogPath string
	// OnExit, if set, is called with the child's exit state once it has been
	// reaped and before Done closes, so whatever it does is finished by the
	// time Stop or Kill returns.
	OnExit func(*os.ProcessState)
}

// Process is a running (or ended) child.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	tail    *ring
	done    chan struct{} // closed when the child has exited and been reaped
	waitErr error         // valid after done
}

// tailBytes bounds the in-memory tail: enough for the lines that say why a
// node or a JVM quit.
const tailBytes = 32 << 10

// Start starts c in its own process group (see procAttr). It returns once
// the child runs; Done closes when it ends.
func Start(c Command) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s's log: %w", c.Name, err)
	}
	fmt.Fprintf(f, "\n=== starting %s at %s\n", c.Name, time.Now().Format(time.RFC3339))
	p := &Process{name: c.Name, logPath: c.LogPath, tail: newRing(tailBytes), done: make(chan struct{})}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir = c.Dir
	out := io.MultiWriter(f, p.tail)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	// The output is copied through a pipe; should a grandchild hold it open
	// after the child exits, Wait gives up on it rather than hang.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", c.Name, c.Path, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		if c.OnExit != nil {
			c.OnExit(cmd.ProcessState)
		}
		close(p.done)
	}()
	return p, nil
}

// Name is Command.Name.
func (p *Process) Name() string { return p.name }

// LogPath is the file the child's output goes to.
func (p *Process) LogPath() string { return p.logPath }

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err waits for the child to end and returns what waiting for it returned.
func (p *Process) Err() error {
	<-p.done
	return p.waitErr
}

// ExitError describes an unexpected exit with the end of the child's
// output, which is where btcd, lnd and the JVM say why they quit.
func (p *Process) ExitError() error {
	return fmt.Errorf("%s exited (%v); end of %s:\n%s", p.name, p.Err(), p.logPath, p.Tail(25))
}

// Tail is the last n lines the child wrote in this run, from memory.
func (p *Process) Tail(n int) string { return LastLines(string(p.tail.bytes()), n) }

// Stop sends SIGTERM, lets the child shut down cleanly for grace (or until
// ctx ends), then kills it. It signals only this child's own PID, never a
// name or a group, and waits for the exit. The error says if it had to kill.
func (p *Process) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	case <-ctx.Done():
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) was still running %s after SIGTERM and was killed",
		p.name, p.Pid(), time.Since(began).Round(time.Millisecond))
}

// Kill ends the child with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// AddrInUse reports whether the child said a port was taken: chosen free,
// bound by another program before the child could. The one failure worth
// starting again on other ports.
func (p *Process) AddrInUse() bool {
	return strings.Contains(p.Tail(40), "address already in use")
}
