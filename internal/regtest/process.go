package regtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is one child (btcd or an lnd) whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited and been reaped
	waitErr error         // valid after done
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s's log: %w", name, err)
	}
	fmt.Fprintf(f, "\n=== regtest harness: starting %s at %s\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited is closed once the process has ended.
func (p *process) exited() <-chan struct{} { return p.done }

// exitError describes an unexpected exit, with the end of the log, which
// is where btcd and lnd say why they quit.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); end of %s:\n%s", p.name, p.waitErr, p.logPath, p.tail(25))
}

func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

// stop sends SIGTERM, lets the process shut down cleanly for grace (or
// until ctx ends), then kills it. It signals only this process's own PID,
// never a name or group, and waits for the exit.
func (p *process) stop(ctx context.Context, grace time.Duration) error {
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
		p.name, p.cmd.Process.Pid, time.Since(began).Round(time.Millisecond))
}

// addrInUse reports whether the process quit because a port was taken
// between choosing it and binding it, the one failure worth a retry.
func (p *process) addrInUse() bool {
	return strings.Contains(p.tail(40), "address already in use")
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const max = 32 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns n distinct free ports on 127.0.0.1. All listeners stay
// open until the last is chosen, so the ports differ from each other; another
// program may still take one before the child binds it, which callers handle
// by retrying (see addrInUse).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor polls check every interval until it reports done, ctx ends, or
// exited closes. The error names what was awaited and the last reason check
// gave for not being done, which is usually the useful part.
func waitFor(ctx context.Context, what string, interval time.Duration, p *process,
	check func(ctx context.Context) (done bool, why error)) error {
	var exited <-chan struct{}
	if p != nil {
		exited = p.exited()
	}
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		done, why := check(cctx)
		cancel()
		if done {
			return nil
		}
		if why != nil {
			last = why
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
			if last != nil {
				err = fmt.Errorf("%w (last: %v)", err, last)
			}
			if p != nil {
				err = fmt.Errorf("%w\nend of %s:\n%s", err, p.logPath, p.tail(25))
			}
			return err
		case <-exited:
			return fmt.Errorf("waiting for %s: %w", what, p.exitError())
		case <-time.After(interval):
		}
	}
}
