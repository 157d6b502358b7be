package main

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name   string
		stat   string
		want   time.Duration
		wantOK bool
	}{
		{"plain", "1234 (tokengate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 3 * time.Second, true},
		{"name with spaces and parens", "99 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 7 3 0 0", 100 * time.Millisecond, true},
		{"truncated", "99 (x) R 1 2 3", 0, false},
		{"no name", "garbage", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStatCPU(tt.stat)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("= %v %v, want %v %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := processCPU(os.Getpid()); !ok && runtime.GOOS == "linux" {
		t.Error("no CPU time for this very process")
	}
}
