package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Client talks HTTP to an agent's metrics server, over TCP or its unix
// socket: `fwagent status`, the benchmark harness and the end-to-end tests
// read the agent through it.
type Client struct {
	http *http.Client
	base string
}

// NewClient returns a client for the server at network and address, as
// ParseAddr returns them. Each request gives up after timeout.
func NewClient(network, address string, timeout time.Duration) *Client {
	tr := &http.Transport{}
	base := "http://" + address
	if network == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}
		base = "http://fwagent"
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: timeout}, base: base}
}

// Get fetches path ("/metrics", "/healthz", ...) and returns the status code
// and the body, at most 64 MiB of it.
func (c *Client) Get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	// The text format, whatever the server prefers.
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("ask the agent: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return resp.StatusCode, b, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }
