package keylock

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestOneHolderPerKey(t *testing.T) {
	var m Map[int]
	var mu sync.Mutex
	held := map[int]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := m.Lock(context.Background(), i%3)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			held[i%3]++
			if held[i%3] != 1 {
				t.Errorf("key %d held %d times", i%3, held[i%3])
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			held[i%3]--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
	if len(m.byKey) != 0 {
		t.Errorf("%d locks left", len(m.byKey))
	}
}

func TestLockCanceled(t *testing.T) {
	var m Map[string]
	unlock, _ := m.Lock(context.Background(), "k")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "k"); err == nil {
		t.Fatal("locked a held key")
	}
	unlock()
	if len(m.byKey) != 0 {
		t.Errorf("%d locks left", len(m.byKey))
	}
}
