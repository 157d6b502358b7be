// Package accesslog writes tokengate's access log off the request path:
// Entry is one request, formatted by appending into a reused buffer in the
// same shape log/slog's JSON or text handler would give it, and Writer
// batches lines to the real output from one goroutine, dropping (and
// counting) lines rather than ever blocking a request.
package accesslog

import (
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Message is the msg of every access line.
const Message = "request"

// Limits on the client-controlled strings a line carries, so a line stays
// small whatever a client sends.
const (
	MaxUserAgent = 256
	MaxLogin     = 128
)

// Entry is one access log line. Empty optional fields are left out.
type Entry struct {
	Time      time.Time
	RequestID string
	Route     string
	Method    string
	Path      string // never the query string: it may hold secrets
	Status    int
	Duration  time.Duration
	Bytes     int64
	Client    string // the address login throttling counts against
	UserAgent string // cut to MaxUserAgent bytes
	Auth      string // optional: the auth decision or login result
	Login     string // optional: the login name a login request gave, cut to MaxLogin
	UserID    string // optional: the authenticated (or just logged in) user
	Rule      string // optional: the access rule that decided (public_paths, a rule's name, default)
	Upstream  time.Duration
}

// Attrs appends the entry's attributes, in line order, for a slog.Logger
// (the path used when no Logger is configured). buf should have room for 14.
func (e *Entry) Attrs(buf []slog.Attr) []slog.Attr {
	buf = append(buf,
		slog.String("request_id", e.RequestID),
		slog.String("route", e.Route),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.Float64("duration_ms", millis(e.Duration)),
		slog.Int64("bytes", e.Bytes),
		slog.String("client", e.Client),
		slog.String("user_agent", cut(e.UserAgent, MaxUserAgent)),
	)
	if e.Auth != "" {
		buf = append(buf, slog.String("auth", e.Auth))
	}
	if e.Login != "" {
		buf = append(buf, slog.String("login", cut(e.Login, MaxLogin)))
	}
	if e.UserID != "" {
		buf = append(buf, slog.String("user_id", e.UserID))
	}
	if e.Rule != "" {
		buf = append(buf, slog.String("rule", e.Rule))
	}
	if e.Upstream > 0 {
		buf = append(buf, slog.Float64("upstream_ms", millis(e.Upstream)))
	}
	return buf
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cut shortens s to at most n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Logger formats entries and writes each as one line to its writer.
type Logger struct {
	w    writer
	text bool
	bufs sync.Pool
}

// writer is the one method Logger needs (a *Writer, or any io.Writer).
type writer interface {
	Write(p []byte) (int, error)
}

// NewLogger writes lines to w in format "json" (the default) or "text",
// field for field what slog.NewJSONHandler or slog.NewTextHandler would
// write for the same attributes at level INFO.
func NewLogger(w writer, format string) *Logger {
	l := &Logger{w: w, text: format == "text"}
	l.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return l
}

// Log formats e into a pooled buffer and writes it: no allocation per line
// once the pool is warm.
func (l *Logger) Log(e *Entry) {
	bp := l.bufs.Get().(*[]byte)
	var b []byte
	if l.text {
		b = AppendText((*bp)[:0], e)
	} else {
		b = AppendJSON((*bp)[:0], e)
	}
	_, _ = l.w.Write(b)
	if cap(b) <= 64<<10 { // a huge line is not worth keeping
		*bp = b
		l.bufs.Put(bp)
	}
}

// AppendJSON appends e as slog's JSON handler formats it, newline included.
func AppendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"`+Message+`"`...)
	b = jsonString(b, "request_id", e.RequestID)
	b = jsonString(b, "route", e.Route)
	b = jsonString(b, "method", e.Method)
	b = jsonString(b, "path", e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.Duration, false)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = jsonString(b, "client", e.Client)
	b = jsonString(b, "user_agent", cut(e.UserAgent, MaxUserAgent))
	if e.Auth != "" {
		b = jsonString(b, "auth", e.Auth)
	}
	if e.Login != "" {
		b = jsonString(b, "login", cut(e.Login, MaxLogin))
	}
	if e.UserID != "" {
		b = jsonString(b, "user_id", e.UserID)
	}
	if e.Rule != "" {
		b = jsonString(b, "rule", e.Rule)
	}
	if e.Upstream > 0 {
		b = append(b, `,"upstream_ms":`...)
		b = appendMillis(b, e.Upstream, false)
	}
	return append(b, "}\n"...)
}

// AppendText appends e as slog's text handler formats it, newline included.
func AppendText(b []byte, e *Entry) []byte {
	b = append(b, "time="...)
	b = appendRFC3339Millis(b, e.Time)
	b = append(b, " level=INFO msg="+Message...)
	b = textString(b, "request_id", e.RequestID)
	b = textString(b, "route", e.Route)
	b = textString(b, "method", e.Method)
	b = textString(b, "path", e.Path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, " duration_ms="...)
	b = appendMillis(b, e.Duration, true)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = textString(b, "client", e.Client)
	b = textString(b, "user_agent", cut(e.UserAgent, MaxUserAgent))
	if e.Auth != "" {
		b = textString(b, "auth", e.Auth)
	}
	if e.Login != "" {
		b = textString(b, "login", cut(e.Login, MaxLogin))
	}
	if e.UserID != "" {
		b = textString(b, "user_id", e.UserID)
	}
	if e.Rule != "" {
		b = textString(b, "rule", e.Rule)
	}
	if e.Upstream > 0 {
		b = append(b, " upstream_ms="...)
		b = appendMillis(b, e.Upstream, true)
	}
	return append(b, '\n')
}

// appendRFC3339Millis is the text handler's time: RFC 3339 with exactly
// three fractional digits. (The JSON handler writes RFC3339Nano.)
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}

// appendMillis writes d in milliseconds with microsecond precision, as
// slog writes float64(d.Microseconds())/1000 (encoding/json's shortest 'f'
// form in JSON, 'g' in text), but with integer arithmetic: the shortest
// decimal of us/1000 is the integer part, a point and the three digits
// with trailing zeros dropped, for every duration under 1e6 ms (text
// switches to exponent form there, JSON far beyond: those take strconv).
func appendMillis(b []byte, d time.Duration, text bool) []byte {
	us := d.Microseconds()
	if us < 0 || us >= 1e9 {
		f := millis(d)
		if text {
			return strconv.AppendFloat(b, f, 'g', -1, 64)
		}
		if abs := max(f, -f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
			return strconv.AppendFloat(b, f, 'e', -1, 64)
		}
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	if frac == 0 {
		return b
	}
	digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 3
	for digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}

func jsonString(b []byte, key, s string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":"`...)
	b = appendEscapedJSON(b, s)
	return append(b, '"')
}

func textString(b []byte, key, s string) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

const hexDigits = "0123456789abcdef"

// appendEscapedJSON is slog's JSON string escaping: quote, backslash and
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped; everything else, HTML characters included, as is.
func appendEscapedJSON(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// needsQuoting is slog's text handler rule.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\\' && (c <= ' ' || c == '=' || c == '"') {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}
