// Package wiretest loads the protocol's reference vectors
// (../shared/protocol/vectors.json beside the repository, or the file named by
// LIGHTNING_VECTORS) for the tests of every package that speaks the format.
package wiretest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Vectors is the vectors file.
type Vectors struct {
	Key          string   `json:"key"`
	PreviousKeys []string `json:"previous_keys"`
	NowMS        int64    `json:"now_ms"`
	MaxSkewMS    int64    `json:"max_skew_ms"`
	Valid        []struct {
		Name        string `json:"name"`
		Value       string `json:"value"`
		TimestampMS int64  `json:"timestamp_ms"`
		Task        string `json:"task"`
		Fields      struct {
			PaymentRequest string `json:"payment_request"`
			Amount         *int64 `json:"amount"`
			Message        string `json:"message"`
			Expiry         int64  `json:"expiry"`
		} `json:"fields"`
		Note string `json:"note"`
	} `json:"valid_requests"`
	Rejected []struct {
		Name   string `json:"name"`
		Value  string `json:"value"`
		Reason string `json:"reason"`
	} `json:"rejected_requests"`
	Invalid []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Task  string `json:"task"`
		Error string `json:"error"`
	} `json:"invalid_requests"`
	Results []struct {
		Name        string `json:"name"`
		TimestampMS int64  `json:"timestamp_ms"`
		JSON        string `json:"json"`
		Value       string `json:"value"`
	} `json:"results"`
}

// Path finds the vectors file: $LIGHTNING_VECTORS, else shared/protocol beside
// the repository root (the directory holding go.mod).
func Path() (string, error) {
	if p := os.Getenv("LIGHTNING_VECTORS"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "protocol", "vectors.json"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load reads the vectors, failing the test if they cannot be read: a test
// that silently skipped them would prove nothing.
func Load(t testing.TB) *Vectors {
	t.Helper()
	p, err := Path()
	if err != nil {
		t.Fatalf("locating vectors.json: %v", err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading vectors (set LIGHTNING_VECTORS to override): %v", err)
	}
	var v Vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("parsing %s: %v", p, err)
	}
	if len(v.Valid) == 0 || len(v.Rejected) == 0 || len(v.Invalid) == 0 || len(v.Results) == 0 {
		t.Fatalf("%s lacks a section of vectors", p)
	}
	return &v
}
