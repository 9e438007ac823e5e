package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// DefaultServer is the address rein-server listens on by default.
const DefaultServer = "http://127.0.0.1:4800"

// DefaultRequestTimeout is New's RequestTimeout. rein-server answers
// every request that is not a stream within its own deadlines (a commit
// fails after seconds, not minutes), and the slowest read, a long
// session's turns, takes seconds.
const DefaultRequestTimeout = time.Minute

// Client talks to one rein-server. The zero value is not usable: use New.
type Client struct {
	base  string
	token string
	// HTTP sends every request and opens the streams. Never give it a
	// Timeout: for a stream that would cover reading the whole body. One
	// of your own should keep New's CheckRedirect (see RedirectError).
	HTTP *http.Client
	// OnRetry, when set, is called before Command sends a command again
	// after err, in wait.
	OnRetry func(err error, wait time.Duration)
	// RequestTimeout bounds each request that is not a stream, its
	// answer read included (0: no bound). A server or a proxy that takes
	// the connection and never answers would otherwise hold a command
	// line until Ctrl-C; a command so cut is sent again with its key
	// (Command). Streams have their own idle timeout (StreamOptions).
	RequestTimeout time.Duration

	idempotent atomic.Int32 // the server's idempotentCommands: 0 not known yet, 1 yes, 2 no
}

// New returns a client for base (for example "http://127.0.0.1:4800");
// token is the client token, sent as "Authorization: Bearer" when not "".
// A token with a control character (a newline read along with it) is
// refused here: no HTTP header can carry it, and every request would fail
// before leaving the machine, as if the network were down, so streams
// and command resends would try again forever.
func New(base, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want http://host:port or https://host:port", base)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x20 || b == 0x7f {
			return nil, fmt.Errorf("client token: contains a control character (byte %#02x at %d); it cannot be sent in an HTTP header", b, i)
		}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, HTTP: &http.Client{CheckRedirect: keepMethod}, RequestTimeout: DefaultRequestTimeout}, nil
}

// RedirectError is a request refused at a redirect that would have
// changed its method.
type RedirectError struct {
	Method, Path string
	// To is where the server (or a proxy in front of it) sent it.
	To string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("%s %s was redirected to %s, where it would arrive as a GET and do nothing: use that address as the server's", e.Method, e.Path, e.To)
}

// keepMethod is the client's redirect policy. net/http follows a 301,
// 302 or 303 answer to a POST or DELETE with a GET of the new address: a
// server behind a proxy that redirects http to https would "answer" rein
// rm with the session it read, and the session would stay. So a redirect
// that changes the method is an error, sent nowhere; 307 and 308, which
// keep it, and redirects of a GET are followed.
func keepMethod(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0]; req.Method != first.Method {
		return &RedirectError{Method: first.Method, Path: first.URL.Path, To: req.URL.String()}
	}
	return nil
}

// Base returns the server's base URL.
func (c *Client) Base() string { return c.base }

// Error is a non-2xx answer: its HTTP status and the server's error body.
// It unwraps to a *protocol.Error, so errors.Is(err, protocol.ErrNotFound)
// works.
type Error struct {
	Status  int
	Code    protocol.Code
	Message string
	// RetryAfter is how long the answer's Retry-After asked to wait
	// before the next request (a 503 or 429 of a proxy or load balancer
	// in front of the server, during a deploy say); 0 when it has none.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

// Unwrap returns the wire error, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return &protocol.Error{Code: e.Code, Message: e.Message} }

// Permanent reports whether sending the same request again cannot
// succeed: the code's disposition is not protocol.Retry (a bad request,
// refused credentials, a session that does not exist, a conflict). A 409
// no_sandbox is not permanent: the command succeeds once a sandbox
// connects.
func (e *Error) Permanent() bool { return !e.Code.Retryable() }

// errorFrom builds an *Error from a non-2xx response: the code by
// protocol.CodeForAnswer (the server's JSON body when its code goes with
// the status, else the status alone), the message from the body, or the
// request and status for an answer that is not the server's (a proxy's
// error page).
func errorFrom(resp *http.Response) *Error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body protocol.ErrorBody
	_ = json.Unmarshal(data, &body) // a page that is not JSON leaves it empty
	code := protocol.CodeForAnswer(resp.StatusCode, body.Code)
	e := &Error{Status: resp.StatusCode, Code: code, Message: body.Message, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	if code != body.Code || body.Message == "" {
		e.Message = fmt.Sprintf("%s %s: HTTP %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	return e
}

// retryAfter reads a Retry-After value: seconds, or an HTTP date; 0 for
// none, one in the past, or one it cannot read.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// newRequest builds a request to path with the client token.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// Do sends a request with an optional JSON body (nil for none) and decodes
// a JSON answer into out (when out is not nil). A non-2xx answer is an
// *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.exchange(ctx, method, path, nil, body, out)
	return err
}

// exchange is Do with request headers hdr (nil for none), returning the
// answer (its body read and closed) for its status and headers.
func (c *Client) exchange(ctx context.Context, method, path string, hdr http.Header, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	parent := ctx
	if c.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.RequestTimeout)
		defer cancel()
	}
	// timedOut says so when the bound, not the caller, ended the request.
	timedOut := func(err error) error {
		if ctx.Err() != nil && parent.Err() == nil {
			return fmt.Errorf("%s %s: no answer within %s (is the server, or a proxy in front of it, stuck?): %w", method, path, c.RequestTimeout, err)
		}
		return err
	}
	req, err := c.newRequest(ctx, method, path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, timedOut(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, errorFrom(resp)
	}
	if out == nil {
		// rein-server answers a DELETE with 204 and nothing; a page is
		// a proxy's (a login or block page), and the request may never
		// have reached the server: not a success.
		if mediaType(resp) == "text/html" {
			return nil, notServers(resp, "")
		}
		return resp, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		// Nothing at all (io.EOF; an answer cut on the way is
		// io.ErrUnexpectedEOF) is not rein-server's answer either: taken
		// as one, a command would be "sent" as command 0, a session
		// "created" with no token.
		if mt := mediaType(resp); mt != "application/json" || errors.Is(err, io.EOF) {
			return nil, notServers(resp, "JSON")
		}
		return nil, timedOut(fmt.Errorf("%s %s: decode answer: %w", method, path, err))
	}
	return resp, nil
}

// mediaType is the answer's Content-Type without parameters, lower case.
func mediaType(resp *http.Response) string {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt
}

// notServersError is a 2xx answer that is not rein-server's.
type notServersError struct{ msg string }

func (e *notServersError) Error() string { return e.msg }

// notServers is the error for a 2xx answer that is not rein-server's
// (want: what it should have been, "" for nothing at all): said as such,
// rather than as "invalid character '<'", or as a success.
func notServers(resp *http.Response, want string) error {
	what := "an answer"
	if want != "" {
		what = want
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "no Content-Type"
	}
	return &notServersError{fmt.Sprintf("%s %s: the answer (HTTP %s, %s) is not rein-server's %s: is the server address right, or is a proxy or login page in the way?",
		resp.Request.Method, resp.Request.URL.Path, resp.Status, ct, what)}
}

func sessionPath(id string) string { return "/sessions/" + url.PathEscape(id) }

// Sessions lists sessions, oldest first; project "" means all.
func (c *Client) Sessions(ctx context.Context, project string) ([]protocol.Session, error) {
	path := "/sessions"
	if project != "" {
		path += "?project=" + url.QueryEscape(project)
	}
	var out []protocol.Session
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Session returns one session record.
func (c *Client) Session(ctx context.Context, id string) (protocol.Session, error) {
	var out protocol.Session
	err := c.Do(ctx, http.MethodGet, sessionPath(id), nil, &out)
	return out, err
}

// CreatedSession is the answer to CreateSession: the record, and the
// session's sandbox token, which the server shows only this once. It is
// protocol.CreatedSession, the 201 body.
type CreatedSession = protocol.CreatedSession

// CreateSession creates a session; project "" means none.
func (c *Client) CreateSession(ctx context.Context, id, project string) (CreatedSession, error) {
	var req protocol.CreateSessionRequest
	if project != "" {
		req.Project = &project
	}
	return c.CreateSessionWith(ctx, id, req)
}

// CreateSessionWith creates a session from a full create body: a project
// and an initial prompt (command 1, delivered when a sandbox first
// connects), each optional.
func (c *Client) CreateSessionWith(ctx context.Context, id string, req protocol.CreateSessionRequest) (CreatedSession, error) {
	var body any
	if req.Project != nil || req.Prompt != nil {
		body = req
	}
	var out CreatedSession
	err := c.Do(ctx, http.MethodPost, sessionPath(id), body, &out)
	return out, err
}

// RotateSandboxToken gives the session a new sandbox token and returns it;
// the previous token stops working at once (a running agentd that holds it
// stops).
func (c *Client) RotateSandboxToken(ctx context.Context, id string) (string, error) {
	var out protocol.SandboxToken
	if err := c.Do(ctx, http.MethodPost, sessionPath(id)+"/token", nil, &out); err != nil {
		return "", err
	}
	return out.SandboxToken, nil
}

// DeleteSession deletes a session and everything it owns.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	resp, err := c.exchange(ctx, http.MethodDelete, sessionPath(id), nil, nil, nil)
	if err == nil && resp.StatusCode != http.StatusNoContent {
		// rein-server's answer is 204: another 2xx came from something
		// else at that address, and the session may be there still.
		return notServers(resp, "")
	}
	return err
}

// commandWaits are the waits before each resend of a command whose answer
// was lost: five sends in about four seconds, enough to ride out a
// dropped connection or a replica's restart behind a load balancer, short
// enough that a user at a prompt is not left waiting on a server that is
// down.
var commandWaits = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

// Command sends a command to the session's sandbox and returns the id the
// server gave it. It sends it with a new Idempotency-Key, and when the
// answer is lost (a network error: the command may or may not be stored)
// or the server is unavailable (502, 503, 504), it sends it again with the
// same key, a few times over a few seconds: the server stores it once, so
// the agent never gets a prompt twice. It resends only to a server whose
// discovery manifest lists the idempotentCommands feature; an older
// server gets one send, as before. OnRetry hears of each resend.
func (c *Client) Command(ctx context.Context, id string, cmd protocol.Command) (int64, error) {
	res, err := c.CommandWithKey(ctx, id, NewIdempotencyKey(), cmd)
	return res.ID, err
}

// CommandWithKey is Command with the caller's Idempotency-Key, for a
// program that may send the same command again from a new process (a
// script run again, a retried CI step): with the same key the session
// stores it once, and Replayed says an earlier send had stored it.
func (c *Client) CommandWithKey(ctx context.Context, id, key string, cmd protocol.Command) (CommandResult, error) {
	res, err := c.CommandOnce(ctx, id, key, cmd)
	// reached: a send may have reached the server (it got further
	// than the dial), so the command may be stored.
	reached := err != nil && !refused(err)
	for _, wait := range commandWaits {
		if err == nil || ctx.Err() != nil || !resendable(err) {
			break
		}
		ok, ferr := c.idempotentCommands(ctx)
		if ferr == nil && !ok {
			break // a server without the feature gets one send
		}
		if c.OnRetry != nil {
			c.OnRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			// Both: the caller stopped it (errors.Is(err,
			// context.Canceled) is how a command line knows it was
			// interrupted), and what the last send got.
			err = fmt.Errorf("%w while waiting to send the command again; the last send: %w", ctx.Err(), err)
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		if ferr != nil {
			continue // the manifest was out of reach too: ask it again
		}
		res, err = c.CommandOnce(ctx, id, key, cmd)
		reached = reached || err != nil && !refused(err)
	}
	// Stopped by the caller too (Ctrl-C on a send that hangs): a send
	// that got past connecting may have been stored, and the caller,
	// whose next move is to send it again, needs the key for that.
	if err != nil && reached && resendable(err) && c.idempotent.Load() != 2 {
		return res, &UnconfirmedError{Key: key, Err: err}
	}
	return res, err
}

// refused reports whether err is a connection that could not be made: the
// request never left.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// UnconfirmedError is CommandWithKey's error when no send of the command
// got the server's answer (the last one lost it, a server or proxy was
// unavailable, or the caller's ctx ended while one was on its way or
// waiting to go again: then it also unwraps to ctx's error) and one of
// them got past connecting: the command may be stored all the same. Sending it again
// with Key (CommandWithKey, rein prompt --idempotency-key) stores it at
// most once; with a new key it may be stored twice. It unwraps to the
// last send's error.
type UnconfirmedError struct {
	Key string
	Err error
}

func (e *UnconfirmedError) Error() string { return e.Err.Error() }

// Unwrap returns the last send's error.
func (e *UnconfirmedError) Unwrap() error { return e.Err }

// CommandResult is the answer to a command.
type CommandResult struct {
	// ID is the command's id in its session.
	ID int64
	// Replayed: the key named a command the session already had (an
	// earlier send of this one); nothing new was stored.
	Replayed bool
}

// CommandOnce sends a command once with Idempotency-Key key ("" for
// none), for a caller that retries by itself, across restarts of its own
// process for example: sending it again with the same key is safe. The
// same key with a different command is a conflict.
func (c *Client) CommandOnce(ctx context.Context, id, key string, cmd protocol.Command) (CommandResult, error) {
	var hdr http.Header
	if key != "" {
		hdr = http.Header{protocol.HeaderIdempotencyKey: {key}}
	}
	// An answer that broke on the way after the command was stored is
	// an error too: a resend with the key finds the command.
	var out protocol.CommandAccepted
	resp, err := c.exchange(ctx, http.MethodPost, sessionPath(id)+"/commands", hdr, cmd, &out)
	if err != nil {
		return CommandResult{}, err
	}
	return CommandResult{ID: out.ID, Replayed: resp.Header.Get(protocol.HeaderIdempotentReplayed) == "true"}, nil
}

// NewIdempotencyKey returns a new random Idempotency-Key: 26 base32
// characters, 128 random bits (crypto/rand.Text).
func NewIdempotencyKey() string { return rand.Text() }

// resendable reports whether a command's send may be repeated with its
// key: the answer was lost on the way (an error that is not the server's
// answer), or the server, or a proxy in front of it, said it is
// unavailable for now. A certificate the client does not trust stays
// untrusted, and an answer that came from something other than
// rein-server (a login page, nothing at all) comes again: both are said at
// once.
func resendable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout
	}
	var cert *tls.CertificateVerificationError
	var redirect *RedirectError
	var other *notServersError
	return !errors.As(err, &cert) && !errors.As(err, &redirect) && !errors.As(err, &other)
}

// idempotentCommands reports whether the server's discovery manifest has
// the idempotentCommands feature; an answer is remembered.
func (c *Client) idempotentCommands(ctx context.Context) (bool, error) {
	switch c.idempotent.Load() {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	var d struct {
		Features map[string]bool `json:"features"`
	}
	if err := c.Do(ctx, http.MethodGet, "/.well-known/rein.json", nil, &d); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			c.idempotent.Store(2) // a server older than its manifest
			return false, nil
		}
		return false, err
	}
	if d.Features["idempotentCommands"] {
		c.idempotent.Store(1)
		return true, nil
	}
	c.idempotent.Store(2)
	return false, nil
}

// Prompt sends a prompt.
func (c *Client) Prompt(ctx context.Context, id, text string) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandPrompt, Text: text})
}

// QueuePrompt sends a prompt that is accepted even while no sandbox is
// connected: it is delivered when one connects (instead of no_sandbox).
func (c *Client) QueuePrompt(ctx context.Context, id, text string) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandPrompt, Text: text, Queue: true})
}

// Abort asks the agent to end its current turn.
func (c *Client) Abort(ctx context.Context, id string) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandAbort})
}

// AnswerPermission answers the permission request requestID with one of
// its options: whichever request waits under the id when the answer
// arrives (see AnswerPermissionAt).
func (c *Client) AnswerPermission(ctx context.Context, id, requestID, optionID string) (int64, error) {
	return c.AnswerPermissionAt(ctx, id, requestID, 0, optionID)
}

// AnswerPermissionAt answers the permission request requestID whose
// permission artifact is at seq (an Approval's Seq; 0 for whichever
// waits under the id). Agents use an id again once its request is
// resolved: with seq, the server refuses (409 conflict) an answer that
// would reach a later request than the one the user saw.
func (c *Client) AnswerPermissionAt(ctx context.Context, id, requestID string, seq int64, optionID string) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: requestID, OptionID: optionID, RequestSeq: seq})
}

// CancelPermission answers the permission request requestID with the
// outcome "cancelled" (for a request that offers no option to pick).
func (c *Client) CancelPermission(ctx context.Context, id, requestID string) (int64, error) {
	return c.CancelPermissionAt(ctx, id, requestID, 0)
}

// CancelPermissionAt is CancelPermission for the request at seq (see
// AnswerPermissionAt).
func (c *Client) CancelPermissionAt(ctx context.Context, id, requestID string, seq int64) (int64, error) {
	return c.Command(ctx, id, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: requestID, Outcome: protocol.OutcomeCancelled, RequestSeq: seq})
}

// Artifacts returns the session's artifacts ordered by seq: the whole
// transcript, in one answer (ArtifactPages reads it a page at a time).
func (c *Client) Artifacts(ctx context.Context, id string) ([]*protocol.Artifact, error) {
	var out []*protocol.Artifact
	err := c.Do(ctx, http.MethodGet, sessionPath(id)+"/artifacts", nil, &out)
	return out, err
}

// artifactsPage is a page of GET /sessions/:id/artifacts?after=R&limit=N.
type artifactsPage struct {
	Artifacts []*protocol.Artifact `json:"artifacts"`
	Rev       int64                `json:"rev"`
	Next      *int64               `json:"next"`
}

// ArtifactPages reads the session's artifacts a page at a time (limit
// per page, 1 to 5000; 0: the server's default, 500 or 1 MiB of bodies)
// and calls fn with each, lowest revision first, until the last or an
// error from fn. An artifact changed between two pages comes again, as
// it is then. Only a page is held at a time, and each is a request of its
// own: a long transcript read in one answer cost as much memory, and on
// a slow link more time than a request may take. A session deleted and
// created again under the id between two pages is an error.
func (c *Client) ArtifactPages(ctx context.Context, id string, limit int, fn func([]*protocol.Artifact) error) error {
	var after, created int64
	for {
		path := pagePath(id, "artifacts", after, limit)
		var raw json.RawMessage
		resp, err := c.exchange(ctx, http.MethodGet, path, nil, nil, &raw)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
			// A server from before pages ignores after and limit and
			// answers with the whole list.
			var all []*protocol.Artifact
			if err := json.Unmarshal(raw, &all); err != nil {
				return fmt.Errorf("GET %s: decode answer: %w", path, err)
			}
			return fn(all)
		}
		var page artifactsPage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("GET %s: decode answer: %w", path, err)
		}
		// The cursor is only a revision: the pages of another session
		// under the id would be laid over this one's.
		now := sessionCreated(resp)
		if created != 0 && now != 0 && now != created {
			return fmt.Errorf("read artifacts session=%s: the session was deleted and created again while it was read (createdAt %d, then %d)", id, created, now)
		}
		if created == 0 {
			created = now
		}
		if err := fn(page.Artifacts); err != nil {
			return err
		}
		if page.Next == nil {
			return nil
		}
		if *page.Next <= after {
			return fmt.Errorf("read artifacts session=%s: the pages did not advance past revision %d", id, after)
		}
		after = *page.Next
	}
}
