package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	if err := run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "no command given") {
		t.Errorf("no command: %v", err)
	}
	if err := run(t.Context(), []string{"serve"}); err == nil || !strings.Contains(err.Error(), `unknown command "serve"`) {
		t.Errorf("serve, which is lightning-service's: %v", err)
	}
	// A bad flag stops each command before it builds or starts anything.
	for _, cmd := range []string{"sandbox", "bench"} {
		if err := run(t.Context(), []string{cmd, "-no-such-flag"}); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s -no-such-flag: %v", cmd, err)
		}
	}
}
