package kafkatest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// The broker spends most of its start loading classes, so the first broker to
// exit cleanly leaves an AppCDS archive of them (Java 17's
// -XX:ArchiveClassesAtExit) and later JVMs map it: measured on two loaded
// cores, 11 s restarts became 7 s.

// classArchive returns the JVM flags that use the class archive for these
// jars and this java, or, while there is none, make one at exit; and a
// function to call with the JVM's exit state. Any trouble means no flags: the
// archive only saves time.
func (b *Broker) classArchive() (flags []string, exited func(*os.ProcessState)) {
	noop := func(*os.ProcessState) {}
	path, err := archivePath(b.opts.LibDir)
	if err != nil {
		return nil, noop
	}
	// The JVM's own CDS chatter (classes it skips, a stale archive) is noise.
	quiet := "-Xlog:cds*=off"
	if _, err := os.Stat(path); err == nil {
		return []string{"-XX:SharedArchiveFile=" + path, quiet}, noop
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	tmp := path + ".tmp-" + hex.EncodeToString(suffix[:])
	return []string{"-XX:ArchiveClassesAtExit=" + tmp, quiet}, func(st *os.ProcessState) {
		defer os.Remove(tmp) // after a rename, a no-op
		if st == nil {
			return
		}
		// A JVM killed by a signal may have left half an archive.
		if ws, ok := st.Sys().(syscall.WaitStatus); !ok || ws.Signaled() {
			return
		}
		if fi, err := os.Stat(tmp); err == nil && fi.Size() > 0 {
			os.Rename(tmp, path)
		}
	}
}

// archivePath names the archive after what it depends on: the jars and the
// java binary (an upgraded JDK cannot use an old archive).
func archivePath(libDir string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return "", err
	}
	if java, err = filepath.EvalSymlinks(java); err != nil {
		return "", err
	}
	fi, err := os.Stat(java)
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(libDir)
	if err != nil {
		return "", err
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", abs, java, fi.Size(), fi.ModTime().UnixNano()))
	dir := filepath.Join(cache, "kafka-"+Version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(dir, "classes-"+hex.EncodeToString(key[:8])+".jsa"), nil
}
