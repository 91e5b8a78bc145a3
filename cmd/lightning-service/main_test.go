package main

import (
	"strings"
	"testing"
)

func TestDevelopmentCommandsPointToLightningDev(t *testing.T) {
	for _, cmd := range []string{"sandbox", "bench"} {
		err := run(t.Context(), []string{cmd})
		if err == nil || !strings.Contains(err.Error(), "go run ./cmd/lightning-dev "+cmd) {
			t.Errorf("lightning-service %s: %v; want a pointer to lightning-dev", cmd, err)
		}
	}
	if err := run(t.Context(), []string{"frobnicate"}); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("an unknown command: %v", err)
	}
}
