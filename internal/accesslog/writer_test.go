package accesslog

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// stalled is a reader that stops reading: Write blocks until release is
// closed (a full pipe nobody drains), then records what it got.
type stalled struct {
	release chan struct{}
	entered chan struct{} // one value per Write call that started
	mu      sync.Mutex
	got     bytes.Buffer
	writes  int
}

func newStalled() *stalled {
	return &stalled{release: make(chan struct{}), entered: make(chan struct{}, 1000)}
}

func (s *stalled) Write(p []byte) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.got.Write(p)
}

func (s *stalled) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func line(i int) []byte { return fmt.Appendf(nil, "line %06d %s\n", i, strings.Repeat("x", 80)) }

// A reader that stops reading never blocks Write: every call returns while
// the writer goroutine is stuck, lines past the bound are dropped whole and
// counted, and the ones kept arrive intact and in order once it reads again.
func TestWriterStalledReaderDoesNotBlock(t *testing.T) {
	out := newStalled()
	var drops [][2]uint64
	var dropsMu sync.Mutex
	w := NewWriter(out, WriterOptions{
		BufferBytes: 4 << 10, BatchBytes: 512, FlushInterval: time.Millisecond,
		OnDrop: func(n, total uint64) {
			dropsMu.Lock()
			drops = append(drops, [2]uint64{n, total})
			dropsMu.Unlock()
		},
	})
	w.Write(line(0))
	<-out.entered // the goroutine is now stuck inside out.Write

	const n = 5000 // far more than 4 KiB of lines: bounded by count, not time
	for i := 1; i <= n; i++ {
		if k, err := w.Write(line(i)); k != len(line(i)) || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
	}
	if w.Dropped() == 0 {
		t.Fatal("no line counted as dropped although the buffer was full")
	}
	kept := n + 1 - int(w.Dropped())
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var lines []string
	var warnings int
	for _, l := range got {
		if strings.HasPrefix(l, "line ") {
			lines = append(lines, l)
		} else {
			warnings++
		}
	}
	if len(lines) != kept {
		t.Fatalf("%d lines written, want %d (%d dropped)", len(lines), kept, w.Dropped())
	}
	prev := -1
	for _, l := range lines {
		var i int
		if _, err := fmt.Sscanf(l, "line %d", &i); err != nil || len(l)+1 != len(line(i)) {
			t.Fatalf("damaged line %q", l)
		}
		if i <= prev {
			t.Fatalf("line %d after line %d", i, prev)
		}
		prev = i
	}
	dropsMu.Lock()
	defer dropsMu.Unlock()
	var sum uint64
	for _, d := range drops {
		sum += d[0]
	}
	if len(drops) == 0 || sum != w.Dropped() || drops[len(drops)-1][1] != w.Dropped() {
		t.Errorf("OnDrop reported %v, want a total of %d", drops, w.Dropped())
	}
}

// Lines reach the output without Close, in batches, by the flush interval.
func TestWriterFlushesPeriodically(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	out := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	w := NewWriter(out, WriterOptions{})
	defer w.Close()
	w.Write([]byte("one\n"))
	w.Write([]byte("two\n"))
	waitFor(t, "lines flushed without Close", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return buf.String() == "one\ntwo\n"
	})
}

// Close writes every queued line, even with a flush interval far away, and
// lines written after Close still come out (straight through).
func TestWriterCloseFlushesEverything(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{FlushInterval: time.Hour})
	for i := range 1000 {
		w.Write(line(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done: // the goroutine has returned: nothing leaks
	default:
		t.Fatal("the writer goroutine is still running after Close")
	}
	if got := strings.Count(buf.String(), "\n"); got != 1000 {
		t.Fatalf("%d lines after Close, want 1000", got)
	}
	w.Write([]byte("late\n"))
	if !strings.HasSuffix(buf.String(), "late\n") {
		t.Fatal("a line written after Close was lost")
	}
	if err := w.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

// Close gives up on a reader that never reads again, and says so.
func TestWriterCloseStalledReader(t *testing.T) {
	out := newStalled()
	defer close(out.release)
	w := NewWriter(out, WriterOptions{FlushInterval: time.Millisecond, CloseTimeout: 50 * time.Millisecond})
	w.Write([]byte("stuck\n"))
	<-out.entered
	w.Write([]byte("queued\n"))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("Close = %v, want a stalled-reader error", err)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
