package accesslog

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Writer is an io.Writer for log lines that never makes its caller wait on
// the underlying writer: Write appends the line to a bounded buffer under a
// short lock and returns; one goroutine writes the buffer out in batches,
// at least every FlushInterval, sooner when a batch fills up, and on Close.
// When the reader stalls (a full pipe) and the buffer is full, a line is
// dropped whole and counted; OnDrop reports how many, periodically.
//
// Each Write must be one whole line (slog handlers and Logger write one
// line per call), so a dropped line never leaves half a line behind.
type Writer struct {
	out  io.Writer
	opts WriterOptions

	mu     sync.Mutex
	buf    []byte
	closed bool // after Close: Write goes straight to out

	dropped atomic.Uint64

	kick      chan struct{} // a batch is ready
	stop      chan struct{} // Close was called
	done      chan struct{} // the goroutine has returned
	closeOnce sync.Once
	outMu     sync.Mutex // serialises writes to out after Close
}

// WriterOptions tunes a Writer; the zero value gives the defaults.
type WriterOptions struct {
	// BufferBytes bounds the lines waiting to be written; a line that does
	// not fit is dropped. Default 1 MiB (several thousand lines: at 20,000
	// requests/s about 150 ms of access log).
	BufferBytes int
	// FlushInterval is the longest a line waits before it is written.
	// Default 100ms.
	FlushInterval time.Duration
	// BatchBytes wakes the writer before FlushInterval once this much is
	// waiting. Default 64 KiB.
	BatchBytes int
	// WarnInterval is the least time between two OnDrop calls. Default 10s.
	WarnInterval time.Duration
	// CloseTimeout bounds how long Close waits for a stalled reader.
	// Default 5s.
	CloseTimeout time.Duration
	// OnDrop is called from the writer goroutine with the lines dropped
	// since the previous call and in total, at most once per WarnInterval
	// and once more on Close. It may log through this Writer. Optional.
	OnDrop func(dropped, total uint64)
}

func (o WriterOptions) withDefaults() WriterOptions {
	if o.BufferBytes <= 0 {
		o.BufferBytes = 1 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 64 << 10
	}
	o.BatchBytes = min(o.BatchBytes, o.BufferBytes)
	if o.WarnInterval <= 0 {
		o.WarnInterval = 10 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	return o
}

// NewWriter starts the writer goroutine; Close stops it.
func NewWriter(out io.Writer, opts WriterOptions) *Writer {
	opts = opts.withDefaults()
	w := &Writer{
		out:  out,
		opts: opts,
		// Allocated once at the bound, so Write never grows it; pages are
		// only touched as lines arrive.
		buf:  make([]byte, 0, opts.BufferBytes),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go w.run()
	return w
}

// Write queues the line p and returns at once. It reports success even when
// the line was dropped (a logger could do nothing better with an error);
// Dropped counts those.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.outMu.Lock()
		defer w.outMu.Unlock()
		return w.out.Write(p)
	}
	if len(w.buf)+len(p) > cap(w.buf) {
		w.mu.Unlock()
		w.dropped.Add(1)
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.opts.BatchBytes
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Dropped is the number of lines dropped so far because the buffer was full.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Close writes every queued line and stops the goroutine. When the reader
// is stalled it gives up after CloseTimeout and says how much was lost.
// Lines written after Close go straight to the underlying writer.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() { close(w.stop) })
	t := time.NewTimer(w.opts.CloseTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		w.mu.Lock()
		n := len(w.buf)
		w.mu.Unlock()
		return fmt.Errorf("accesslog: the log reader is stalled: %d queued bytes not written after %s", n, w.opts.CloseTimeout)
	}
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	tick := time.NewTicker(w.opts.FlushInterval)
	defer tick.Stop()
	spare := make([]byte, 0, w.opts.BufferBytes)
	var reported uint64
	var lastWarn time.Time
	for {
		stopping := false
		select {
		case <-tick.C:
		case <-w.kick:
		case <-w.stop:
			stopping = true
		}
		spare = w.flush(spare)
		if d := w.dropped.Load(); d > reported && w.opts.OnDrop != nil &&
			(stopping || time.Since(lastWarn) >= w.opts.WarnInterval) {
			// What queued up while the last write was blocked goes first, so
			// the warning finds room instead of being dropped itself.
			spare = w.flush(spare)
			d = w.dropped.Load()
			w.opts.OnDrop(d-reported, d)
			reported, lastWarn = d, time.Now()
			spare = w.flush(spare) // the warning itself
		}
		if stopping {
			w.mu.Lock()
			// From here on Write goes straight to out; the goroutine is done.
			spare = spare[:0]
			rest := append(spare, w.buf...)
			w.buf = w.buf[:0]
			w.closed = true
			w.mu.Unlock()
			if len(rest) > 0 {
				w.outMu.Lock()
				_, _ = w.out.Write(rest)
				w.outMu.Unlock()
			}
			return
		}
	}
}

// flush swaps the queued lines with spare and writes them out; it returns
// the emptied buffer for the next swap.
func (w *Writer) flush(spare []byte) []byte {
	w.mu.Lock()
	batch := w.buf
	w.buf = spare[:0]
	w.mu.Unlock()
	if len(batch) > 0 {
		// A write error (a closed stderr) loses the batch: there is nowhere
		// else to say so.
		_, _ = w.out.Write(batch)
	}
	return batch[:0]
}
