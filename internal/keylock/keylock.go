// Package keylock serialises work by key within a process: one holder per
// key at a time, the others waiting in turn or until their context ends.
package keylock

import (
	"context"
	"sync"
)

// Map holds one lock per key in use. The zero Map is ready to use.
type Map[K comparable] struct {
	mu    sync.Mutex
	byKey map[K]*lock
}

type lock struct {
	ch      chan struct{} // holds a token while locked
	waiters int
}

// Lock waits until no one else holds k, or ctx ends.
func (m *Map[K]) Lock(ctx context.Context, k K) (unlock func(), err error) {
	m.mu.Lock()
	if m.byKey == nil {
		m.byKey = make(map[K]*lock)
	}
	l := m.byKey[k]
	if l == nil {
		l = &lock{ch: make(chan struct{}, 1)}
		m.byKey[k] = l
	}
	l.waiters++
	m.mu.Unlock()

	release := func() {
		m.mu.Lock()
		if l.waiters--; l.waiters == 0 {
			delete(m.byKey, k)
		}
		m.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
