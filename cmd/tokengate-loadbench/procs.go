package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// child is a server process the run started; it is killed by its PID.
type child struct {
	name      string
	cmd       *exec.Cmd
	stderr    *tailBuffer
	firstLine chan string   // the first line of stdout (or "" at EOF)
	done      chan struct{} // closed when the process has exited
}

// procs owns every child of the run; killAll ends them all.
type procs struct {
	mu       sync.Mutex
	children []*child
}

// start launches path with args: stdin empty, stdout's first line kept (the
// rest drained), the tail of stderr kept for error messages.
func (p *procs) start(name, path string, args []string, env []string) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.SysProcAttr = childProcAttr()
	c := &child{
		name:      name,
		cmd:       cmd,
		stderr:    &tailBuffer{max: 8 << 10},
		firstLine: make(chan string, 1),
		done:      make(chan struct{}),
	}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.mu.Lock()
	p.children = append(p.children, c)
	p.mu.Unlock()
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		c.firstLine <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, br) // stdout must reach EOF before Wait
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// startServer launches a child that prints "listening ADDR" first and
// returns ADDR, or an error if it does not within timeout.
func (p *procs) startServer(ctx context.Context, name, path string, args []string, timeout time.Duration) (*child, string, error) {
	c, err := p.start(name, path, args, os.Environ())
	if err != nil {
		return nil, "", err
	}
	select {
	case line := <-c.firstLine:
		addr, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			// stderr is complete only once the process has been waited for.
			select {
			case <-c.done:
			case <-time.After(2 * time.Second):
			}
			return nil, "", fmt.Errorf("%s did not start: %q; stderr: %s", name, line, c.stderr)
		}
		return c, addr, nil
	case <-time.After(timeout):
		return nil, "", fmt.Errorf("%s: no address after %v; stderr: %s", name, timeout, c.stderr)
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// killAll kills every child by PID (SIGKILL: they hold no state worth a
// graceful stop) and waits for them, newest first.
func (p *procs) killAll() {
	p.mu.Lock()
	children := p.children
	p.children = nil
	p.mu.Unlock()
	for _, c := range slices.Backward(children) {
		_ = c.cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			fmt.Fprintf(os.Stderr, "loadbench: %s (pid %d) did not exit after SIGKILL\n", c.name, c.cmd.Process.Pid)
		}
	}
}

// stop kills one child by PID and waits for it; killAll then skips it.
func (p *procs) stop(c *child) {
	p.mu.Lock()
	p.children = slices.DeleteFunc(p.children, func(x *child) bool { return x == c })
	p.mu.Unlock()
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "loadbench: %s (pid %d) did not exit after SIGKILL\n", c.name, c.cmd.Process.Pid)
	}
}

// exited reports whether the child has already exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(empty)"
	}
	return s
}
