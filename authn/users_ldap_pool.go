package authn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The directory store's connection pool: at most MaxConns connections,
// idle ones reused (bound as the service account) until ldapIdleLimit,
// broken ones closed in the background.

// ldapConn is one pooled connection.
type ldapConn struct {
	c       *ldap.Conn
	raw     net.Conn // the TCP connection under TLS: deadlines end a request
	bound   bool     // bound as the service account
	broken  bool     // a request failed at the network level: discard
	idle    time.Time
	timeout time.Duration // the current request's
}

// withConn runs fn on a pooled connection bound as the service account.
// A reused connection that turns out dead (the server or a firewall closed
// it while idle) is replaced once by a fresh one.
func (s *LDAPUsers) withConn(ctx context.Context, fn func(*ldapConn) error) error {
	wait := time.NewTimer(s.opts.Timeout)
	select {
	case s.slots <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		return fmt.Errorf("%w: ldap: no free connection within %s (all %d busy)", ErrUsersUnavailable, s.opts.Timeout, s.opts.MaxConns)
	case <-ctx.Done():
		wait.Stop()
		return fmt.Errorf("%w: ldap: %v", ErrUsersUnavailable, ctx.Err())
	}
	defer func() { <-s.slots }()
	for attempt := 0; ; attempt++ {
		c, reused, err := s.take(ctx)
		if err != nil {
			return err
		}
		err = s.run(ctx, c, fn)
		s.put(c)
		if err == nil || !c.broken || !reused || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// run binds c as the service account if needed, then calls fn, with the
// request's timeout and a context cancellation that breaks the connection.
func (s *LDAPUsers) run(ctx context.Context, c *ldapConn, fn func(*ldapConn) error) error {
	c.timeout = s.opts.Timeout
	if dl, ok := ctx.Deadline(); ok {
		c.timeout = min(c.timeout, time.Until(dl))
	}
	if c.timeout <= 0 {
		return ctx.Err()
	}
	stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			c.broken = true // the deadline fired: the connection is done
		}
	}()
	if !c.bound {
		if err := s.bindService(c); err != nil {
			return err
		}
	}
	return fn(c)
}

// take returns an idle connection (reused true) or dials a new one.
func (s *LDAPUsers) take(ctx context.Context) (*ldapConn, bool, error) {
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, fmt.Errorf("%w: ldap: store closed", ErrUsersUnavailable)
	}
	for len(s.idle) > 0 {
		c := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if c.c.IsClosing() || now.Sub(c.idle) > ldapIdleLimit {
			s.discard(c)
			continue
		}
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	c, err := s.dial(ctx)
	return c, false, err
}

// put returns c to the pool, or closes it when broken.
func (s *LDAPUsers) put(c *ldapConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.broken || s.closed || c.c.IsClosing() {
		s.discard(c)
		return
	}
	c.idle = s.now()
	s.idle = append(s.idle, c)
}

// discard closes c in the background: go-ldap's Close waits for the
// server's goodbye, which a stopped server never sends.
func (s *LDAPUsers) discard(c *ldapConn) {
	_ = c.raw.SetDeadline(time.Unix(1, 0))
	s.closing.Go(func() { c.c.Close() })
}

// dial connects (TCP, then TLS for ldaps:// or StartTLS) within the dial
// timeout.
func (s *LDAPUsers) dial(ctx context.Context) (*ldapConn, error) {
	start := time.Now()
	c, err := s.dialConn(ctx)
	s.metrics.duration.WithLabelValues("dial").Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.errors.WithLabelValues("dial").Inc()
		return nil, fmt.Errorf("%w: ldap: connect to %s: %v", ErrUsersUnavailable, s.addr, err)
	}
	return c, nil
}

func (s *LDAPUsers) dialConn(ctx context.Context) (*ldapConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	conn := raw
	if s.ldaps {
		tc := tls.Client(raw, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	}
	c := &ldapConn{c: ldap.NewConn(conn, s.ldaps), raw: raw, timeout: s.opts.DialTimeout}
	c.c.Start()
	if s.opts.StartTLS {
		dl, _ := ctx.Deadline()
		_ = raw.SetDeadline(dl)
		c.c.SetTimeout(s.opts.DialTimeout)
		err := c.c.StartTLS(s.tls)
		_ = raw.SetDeadline(time.Time{})
		if err != nil {
			_ = raw.SetDeadline(time.Unix(1, 0))
			c.c.Close()
			return nil, fmt.Errorf("StartTLS: %v", err)
		}
	}
	return c, nil
}
