package kafkatest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"lightning-service/internal/proc"
)

// PythonClientDir is clients/python in the repository holding the working
// directory (found by walking up to go.mod, as go test runs in the package).
func PythonClientDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "clients", "python"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("kafkatest: no go.mod above the working directory, so no clients/python")
		}
		dir = parent
	}
}

// PythonEnv returns the python of a virtualenv holding the Python client's
// requirements.txt, made on first use under the cache dir as
// venv-<hash of requirements.txt> and reused after. Like Fetch it builds in a
// temporary directory and renames, so a killed install leaves nothing half
// made. The base interpreter is $LIGHTNING_PYTHON, else python3 on PATH.
func PythonEnv(ctx context.Context, w io.Writer) (python string, err error) {
	if w == nil {
		w = io.Discard
	}
	clientDir, err := PythonClientDir()
	if err != nil {
		return "", err
	}
	reqPath := filepath.Join(clientDir, "requirements.txt")
	req, err := os.ReadFile(reqPath)
	if err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(req)
	venv := filepath.Join(cache, "venv-"+hex.EncodeToString(sum[:])[:16])
	python = filepath.Join(venv, "bin", "python")
	if runs(ctx, python) {
		return python, nil
	}
	// A venv whose base interpreter was removed or upgraded cannot run.
	os.RemoveAll(venv)

	base := os.Getenv("LIGHTNING_PYTHON")
	if base == "" {
		base = "python3"
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, "venv-tmp-")
	if err != nil {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(w, "kafkatest: making a virtualenv for %s in %s\n", reqPath, venv)
	start := time.Now()
	if err := run(ctx, w, base, "-m", "venv", tmp); err != nil {
		return "", fmt.Errorf("kafkatest: %s -m venv (set LIGHTNING_PYTHON to choose the interpreter): %w", base, err)
	}
	// python -m pip, not bin/pip: the scripts' shebangs name the temporary
	// path, the interpreter finds its venv from where it is run.
	if err := run(ctx, w, filepath.Join(tmp, "bin", "python"), "-m", "pip", "install", "-q", "-r", reqPath); err != nil {
		return "", fmt.Errorf("kafkatest: pip install -r %s: %w", reqPath, err)
	}
	if err := os.Rename(tmp, venv); err != nil && !runs(ctx, python) {
		return "", fmt.Errorf("kafkatest: %w", err)
	}
	fmt.Fprintf(w, "kafkatest: virtualenv ready in %s\n", time.Since(start).Round(time.Millisecond))
	return python, nil
}

// runs reports whether python starts.
func runs(ctx context.Context, python string) bool {
	return exec.CommandContext(ctx, python, "-c", "").Run() == nil
}

// run runs a command with its output to w, adding the output to the error
// too, since w may be a discarded test log.
func run(ctx context.Context, w io.Writer, name string, args ...string) error {
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = io.MultiWriter(w, &buf)
	cmd.Stderr = io.MultiWriter(w, &buf)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w\n%s", err, proc.LastLines(buf.String(), 30))
	}
	return nil
}
