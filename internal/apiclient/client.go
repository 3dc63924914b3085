// Package apiclient is the Go client of the control plane's HTTP API, used by
// the CLI, the demo and the end-to-end tests.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"trellis.dev/trellis/internal/api"
)

// Client talks to the control plane's HTTP API.
type Client struct {
	Base string // e.g. http://127.0.0.1:15000
	HTTP *http.Client
}

// New accepts "host:port" or a URL.
func New(server string) *Client {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return &Client{Base: strings.TrimRight(server, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is an error the control plane answered with.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var uerr *url.Error
		if ok := asURLError(err, &uerr); ok {
			return fmt.Errorf("cannot reach the control plane at %s (set --server or TRELLIS_SERVER): %v", c.Base, uerr.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.Base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Message: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer of %s %s: %w", method, path, err)
	}
	return nil
}

func asURLError(err error, target **url.Error) bool {
	u, ok := err.(*url.Error)
	if ok {
		*target = u
	}
	return ok
}

// Applied is one line of an apply's answer.
type Applied struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	Result     string `json:"result"`
}

// Apply creates or updates the resources in data (YAML or JSON documents).
func (c *Client) Apply(ctx context.Context, data []byte) ([]Applied, error) {
	var out struct {
		Applied []Applied `json:"applied"`
	}
	err := c.Do(ctx, "POST", "/v1/apply", data, &out)
	return out.Applied, err
}

// Instances lists the registered instances.
func (c *Client) Instances(ctx context.Context) ([]api.Instance, error) {
	var out struct {
		Items []api.Instance `json:"items"`
	}
	err := c.Do(ctx, "GET", "/v1/instances", nil, &out)
	return out.Items, err
}
