package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is the default --metrics-addr: loopback only, so the host's
// firewall state is not published to the network unless asked.
const DefaultAddr = "127.0.0.1:9109"

// ParseAddr splits a --metrics-addr into a network and an address for
// net.Listen: "unix:PATH" or a path starting with "/" is a unix socket,
// anything else a TCP host:port. "" and "off" disable the server (ok false).
func ParseAddr(addr string) (network, address string, ok bool, err error) {
	switch {
	case addr == "" || addr == "off":
		return "", "", false, nil
	case strings.HasPrefix(addr, "unix:"):
		p := strings.TrimPrefix(addr, "unix:")
		if p == "" {
			return "", "", false, fmt.Errorf("metrics: address %q: empty socket path", addr)
		}
		return "unix", p, true, nil
	case strings.HasPrefix(addr, "/"):
		return "unix", addr, true, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", false, fmt.Errorf("metrics: address %q: want host:port, unix:PATH or /PATH: %w", addr, err)
	}
	return "tcp", addr, true, nil
}

// ErrInUse is returned by Listen when another process serves the address.
var ErrInUse = errors.New("metrics: address in use")

// listenPatience is how long Listen waits for an address another process
// serves: an agent restarting with overlap (the old one still shutting
// down) gets the address once the old one lets go of it.
const listenPatience = 5 * time.Second

// Listen opens the listener for a --metrics-addr; it returns nil, nil when
// the address disables the server. A unix socket left by a run that died is
// replaced; one a live process serves is not (ErrInUse, after waiting a
// while for it to go), and a path that is not a socket is refused.
func Listen(addr string) (net.Listener, error) {
	return listen(addr, listenPatience)
}

func listen(addr string, patience time.Duration) (net.Listener, error) {
	network, address, ok, err := ParseAddr(addr)
	if err != nil || !ok {
		return nil, err
	}
	deadline := time.Now().Add(patience)
	for {
		ln, err := listenOnce(network, address)
		if !errors.Is(err, ErrInUse) || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func listenOnce(network, address string) (net.Listener, error) {
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil {
			if fi.Mode().Type() != os.ModeSocket {
				return nil, fmt.Errorf("metrics: %s exists and is not a socket", address)
			}
			// Someone answering means a live agent: never steal its path.
			if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("%w: %s", ErrInUse, address)
			}
			if err := os.Remove(address); err != nil {
				return nil, fmt.Errorf("metrics: remove stale socket: %w", err)
			}
		}
	}
	ln, err := net.Listen(network, address)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, address)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	if network == "unix" {
		// Root's agent, root's socket: the metrics say what the firewall
		// lets through.
		if err := os.Chmod(address, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("metrics: chmod socket: %w", err)
		}
	}
	return ln, nil
}

// NewRegistry is a registry with c (and any more collectors) and the Go
// runtime and process collectors.
func NewRegistry(c prometheus.Collector, more ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(more...)
	return reg
}

// Handler serves /metrics from reg and /healthz and /readyz from h.
func Handler(reg prometheus.Gatherer, h *Health, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	mux.HandleFunc("GET /healthz", h.serveHealthz)
	mux.HandleFunc("GET /readyz", h.serveReadyz)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "fwagent: /metrics /healthz /readyz")
	})
	return mux
}

// Serve serves handler on ln until ctx is cancelled, then shuts down,
// giving open requests a second.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// slogPrinter adapts slog to promhttp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	if p.log != nil {
		p.log.Error("metrics", "err", fmt.Sprint(v...))
	}
}
