package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultPath is where the agent listens unless told otherwise.
const DefaultPath = "/run/fwagent/control.sock"

// maxLine bounds a command line: commands are single words.
const maxLine = 256

// ioTimeout bounds each connection, so a client that connects and says
// nothing cannot hold a server goroutine.
const ioTimeout = 5 * time.Second

// Handler answers a command: the reply's message, or an error sent back as
// "error MESSAGE".
type Handler func() (string, error)

// Server serves commands on a unix socket.
type Server struct {
	ln       net.Listener
	path     string
	handlers map[string]Handler
	log      *slog.Logger
}

// Listen binds the socket at path (mode 0600, its directory created 0700 if
// missing). A socket file nobody listens on is a leftover and is replaced;
// one that answers belongs to a live process and is an error.
func Listen(path string, handlers map[string]Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control: socket %s is in use by another process (another agent in another network namespace?): give this one its own --control-socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	// Commands change what the firewall enforces: root (or the agent's
	// user) only.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod socket: %w", err)
	}
	return &Server{ln: ln, path: path, handlers: handlers, log: log}, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers connections until ctx ends, then closes the listener and
// removes the socket file.
func (s *Server) Serve(ctx context.Context) {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("control socket stopped", "err", err)
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c)
		}()
	}
	wg.Wait()
	s.ln.Close()
	os.Remove(s.path)
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReaderSize(c, maxLine)
	line, err := r.ReadSlice('\n')
	if err != nil {
		fmt.Fprintf(c, "error unreadable command: %v\n", err)
		return
	}
	cmd := strings.TrimSpace(string(line))
	h, ok := s.handlers[cmd]
	if !ok {
		fmt.Fprintf(c, "error unknown command %q (known: %s)\n", cmd, strings.Join(s.names(), ", "))
		return
	}
	msg, err := h()
	if err != nil {
		fmt.Fprintf(c, "error %s\n", oneLine(err.Error()))
		return
	}
	s.log.Info("control command", "command", cmd, "reply", msg)
	fmt.Fprintf(c, "ok %s\n", oneLine(msg))
}

func (s *Server) names() []string {
	var out []string
	for n := range s.handlers {
		out = append(out, n)
	}
	return out
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Call sends cmd to the server at path and returns its reply message; an
// "error" reply is returned as an error.
func Call(ctx context.Context, path, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("control: connect to %s (is the agent running with this --control-socket?): %w", path, err)
	}
	defer c.Close()
	deadline := time.Now().Add(ioTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return "", fmt.Errorf("control: send %s: %w", cmd, err)
	}
	line, err := bufio.NewReaderSize(c, 4096).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("control: read reply to %s: %w", cmd, err)
	}
	return ParseReply(line)
}

// ParseReply splits a reply line into its message or its error.
func ParseReply(line string) (string, error) {
	line = strings.TrimRight(line, "\r\n")
	status, msg, _ := strings.Cut(line, " ")
	switch status {
	case "ok":
		return msg, nil
	case "error":
		return "", errors.New(msg)
	}
	return "", fmt.Errorf("control: malformed reply %q", line)
}
