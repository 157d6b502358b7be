package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// viaSlog is what slog's own handler writes for e.
func viaSlog(t testing.TB, e *Entry, format string) string {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler = slog.NewJSONHandler(&buf, nil)
	if format == "text" {
		h = slog.NewTextHandler(&buf, nil)
	}
	rec := slog.NewRecord(e.Time, slog.LevelInfo, Message, 0)
	rec.AddAttrs(e.Attrs(nil)...)
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func sampleEntry() Entry {
	return Entry{
		Time:      time.Date(2026, 11, 27, 14, 3, 4, 567_891_000, time.FixedZone("x", 3600)),
		RequestID: "0123456789abcdef0123456789abcdef",
		Route:     "proxy",
		Method:    "GET",
		Path:      "/api/things",
		Status:    200,
		Duration:  1234567 * time.Nanosecond,
		Bytes:     12,
		Client:    "192.0.2.7",
		UserAgent: "curl/8.5.0",
		Auth:      "allowed",
		UserID:    "marco",
		Rule:      "reports",
		Upstream:  987 * time.Microsecond,
	}
}

func TestFormatMatchesSlog(t *testing.T) {
	tricky := []string{
		"", "plain", "with space", "a=b", `quote"d`, `back\slash`, "tab\tnl\ncr\r",
		"ctl\x00\x01\x1f\x7f", "<script>&amp;", "héllo wörld", "\u2028\u2029", "bad\xffutf8",
		"\u00a0nbsp", "emoji 😀", "🙂", strings.Repeat("x", 300),
	}
	base := sampleEntry()
	var entries []Entry
	entries = append(entries, base, Entry{Time: base.Time}) // every optional field empty
	for _, s := range tricky {
		e := base
		e.Path, e.UserAgent, e.Login, e.UserID, e.Method, e.Rule = "/"+s, s, s, s, s, s
		entries = append(entries, e)
	}
	for _, d := range []time.Duration{0, time.Microsecond, 999 * time.Microsecond, 1010 * time.Microsecond, 1100 * time.Microsecond,
		time.Second, 999_999_999 * time.Microsecond, 1_000_000 * time.Millisecond, 90 * time.Minute, 400 * time.Hour, -time.Millisecond} {
		e := base
		e.Duration, e.Upstream = d, d
		entries = append(entries, e)
	}
	for _, format := range []string{"json", "text"} {
		for i, e := range entries {
			want := viaSlog(t, &e, format)
			var got []byte
			if format == "text" {
				got = AppendText(nil, &e)
			} else {
				got = AppendJSON(nil, &e)
				if !json.Valid(bytes.TrimSpace(got)) {
					t.Errorf("entry %d: invalid JSON %q", i, got)
				}
			}
			if string(got) != want {
				t.Errorf("%s entry %d:\n got %q\nwant %q", format, i, got, want)
			}
		}
	}
}

func FuzzFormatMatchesSlog(f *testing.F) {
	f.Add("/x", "curl/8", "marco", "GET", int64(1234567), int64(987000))
	f.Add("/\u2028", "a\"b", "x=y", "", int64(0), int64(-5))
	f.Fuzz(func(t *testing.T, path, ua, login, method string, dur, up int64) {
		e := sampleEntry()
		e.Path, e.UserAgent, e.Login, e.Method = path, ua, login, method
		e.Duration, e.Upstream = time.Duration(dur), time.Duration(up)
		if got, want := string(AppendJSON(nil, &e)), viaSlog(t, &e, "json"); got != want {
			t.Fatalf("json:\n got %q\nwant %q", got, want)
		}
		if got, want := string(AppendText(nil, &e)), viaSlog(t, &e, "text"); got != want {
			t.Fatalf("text:\n got %q\nwant %q", got, want)
		}
	})
}

func TestLoggerCutsClientStrings(t *testing.T) {
	var buf bytes.Buffer
	e := sampleEntry()
	e.UserAgent = strings.Repeat("u", 10_000)
	e.Login = strings.Repeat("l", 10_000)
	NewLogger(&buf, "json").Log(&e)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if got := len(m["user_agent"].(string)); got != MaxUserAgent {
		t.Errorf("user_agent is %d bytes, want %d", got, MaxUserAgent)
	}
	if got := len(m["login"].(string)); got != MaxLogin {
		t.Errorf("login is %d bytes, want %d", got, MaxLogin)
	}
}

// The line is formatted without allocating (the pool is warm after one).
func TestLoggerDoesNotAllocate(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		l := NewLogger(discard{}, format)
		e := sampleEntry()
		l.Log(&e)
		if n := testing.AllocsPerRun(200, func() { l.Log(&e) }); n > 0 {
			t.Errorf("%s: %v allocations per line", format, n)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkLogger(b *testing.B) {
	e := sampleEntry()
	b.Run("accesslog", func(b *testing.B) {
		l := NewLogger(discard{}, "json")
		b.ReportAllocs()
		for b.Loop() {
			l.Log(&e)
		}
	})
	b.Run("slog", func(b *testing.B) {
		l := slog.New(slog.NewJSONHandler(discard{}, nil))
		var buf [14]slog.Attr
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(context.Background(), slog.LevelInfo, Message, e.Attrs(buf[:0])...)
		}
	})
}
