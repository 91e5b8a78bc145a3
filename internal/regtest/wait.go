package regtest

import (
	"context"
	"fmt"
	"time"

	"lightning-service/internal/proc"
)

// waitFor polls check every interval until it reports done, ctx ends, or
// exited closes. The error names what was awaited and the last reason check
// gave for not being done, which is usually the useful part.
func waitFor(ctx context.Context, what string, interval time.Duration, p *proc.Process,
	check func(ctx context.Context) (done bool, why error)) error {
	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
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
				err = fmt.Errorf("%w\nend of %s:\n%s", err, p.LogPath(), p.Tail(25))
			}
			return err
		case <-exited:
			return fmt.Errorf("waiting for %s: %w", what, p.ExitError())
		case <-time.After(interval):
		}
	}
}
