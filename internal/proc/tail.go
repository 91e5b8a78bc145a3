package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// ring keeps at least the last size bytes written to it, in at most twice
// that, so a write costs a copy only once per size bytes.
type ring struct {
	mu        sync.Mutex
	buf       []byte
	size      int
	truncated bool
}

func newRing(size int) *ring { return &ring{size: size} }

func (r *ring) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, b...)
	if len(r.buf) > 2*r.size {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-r.size:]...)
		r.truncated = true
	}
	return len(b), nil
}

// bytes returns the last size bytes or fewer, from the start of a line.
func (r *ring) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buf[max(len(r.buf)-r.size, 0):]
	if r.truncated || len(b) < len(r.buf) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return append([]byte(nil), b...)
}

// TailFile is the last n lines of the file at path, read from its last
// 32 KiB: for logs a child writes itself, such as the broker's log4j file.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > tailBytes {
		f.Seek(fi.Size()-tailBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return LastLines(string(b), n)
}

// LastLines is the last n lines of s, without a final newline.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
