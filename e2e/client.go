package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// Client talks to rein-server's HTTP API as a client (CLI, web) would.
type Client struct {
	Base  string
	Token string // client token; sent as a Bearer header when set
	HTTP  *http.Client
}

// NewClient returns a client for base (for example http://127.0.0.1:4800).
func NewClient(base string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// HTTPError is a non-2xx answer with its decoded error body.
type HTTPError struct {
	Status int
	Body   protocol.ErrorBody
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Body.Code, e.Body.Message)
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil). Non-2xx answers are *HTTPError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	return c.DoRaw(ctx, method, path, rd, nil, out)
}

// DoRaw is Do with a raw body and extra headers.
func (c *Client) DoRaw(ctx context.Context, method, path string, body io.Reader, hdr http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		he := &HTTPError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, &he.Body)
		return he
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// CreateSessionResult is the 201 body: the record, plus a sandbox token
// when the server issues one.
type CreateSessionResult struct {
	protocol.Session
	SandboxToken string `json:"sandboxToken,omitempty"`
}

// CreateSession creates a session (project may be "").
func (c *Client) CreateSession(ctx context.Context, id, project string) (CreateSessionResult, error) {
	var body any
	if project != "" {
		body = map[string]string{"project": project}
	}
	var out CreateSessionResult
	err := c.Do(ctx, http.MethodPost, "/sessions/"+url.PathEscape(id), body, &out)
	return out, err
}

// Session fetches one session record.
func (c *Client) Session(ctx context.Context, id string) (protocol.Session, error) {
	var s protocol.Session
	err := c.Do(ctx, http.MethodGet, "/sessions/"+url.PathEscape(id), nil, &s)
	return s, err
}

// DeleteSession deletes a session.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/sessions/"+url.PathEscape(id), nil, nil)
}

// Command posts a command and returns its id.
func (c *Client) Command(ctx context.Context, id string, cmd protocol.Command) (int64, error) {
	var out protocol.CommandAccepted
	err := c.Do(ctx, http.MethodPost, "/sessions/"+url.PathEscape(id)+"/commands", cmd, &out)
	return out.ID, err
}

// Prompt sends a prompt command.
func (c *Client) Prompt(ctx context.Context, id, text string) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandPrompt, Text: text})
}

// Artifacts fetches GET /sessions/:id/artifacts.
func (c *Client) Artifacts(ctx context.Context, id string) ([]*protocol.Artifact, error) {
	var out []*protocol.Artifact
	err := c.Do(ctx, http.MethodGet, "/sessions/"+url.PathEscape(id)+"/artifacts", nil, &out)
	return out, err
}
