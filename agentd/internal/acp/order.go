package acp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"

	acpsdk "github.com/coder/acp-go-sdk"
)

// sdkMaxLine is the longest line the SDK reads (its bufio.Scanner's
// buffer, newline included): a longer one ends the connection.
const sdkMaxLine = 10 << 20

// maxLine bounds one message from the agent, as the Codex and Claude Code
// adapters bound theirs. A session/update never reaches the SDK, so it
// may be longer than sdkMaxLine: it carries what an agent reports whole
// (an edit's diff with the file's text, a command's output), and an agent
// whose line ended the connection would be left blocked on a pipe nobody
// reads, then killed with its turn failed. A line over maxLine is
// dropped: one message lost, not the agent.
var maxLine = 64 << 20 // a var only so that a test can lower it (export_test.go)

// orderedReader sits between the agent's stdout and the SDK. It handles
// session/update notifications itself, one at a time in the order they
// were read, and announces session/request_permission requests before
// passing them on; the SDK sees every other line unchanged. So updates
// and permission requests reach Rein in the order the agent sent them,
// although the SDK runs each request in a goroutine of its own.
//
// Read runs on the SDK's receive goroutine: an update that blocks on
// Emit (backpressure) stops the reading of the agent's stdout.
type orderedReader struct {
	r   *bufio.Reader
	a   *adapter
	rec *recorder
	buf []byte // the rest of the line being passed on
	err error
	// tooLong is the size of a line passed on that the SDK cannot read
	// (0 if none): the SDK ends the connection on it.
	tooLong int
	// ready, closed by Serve once the connection is set up (its logger
	// given), holds the SDK's reader back until then: the SDK starts it
	// as the connection is made, and an agent whose output ended at once
	// had it log that end while Serve was still setting the logger, a
	// data race.
	ready chan struct{}
}

// head is what orderedReader needs of a JSON-RPC message.
type head struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func (o *orderedReader) Read(p []byte) (int, error) {
	if o.ready != nil {
		<-o.ready
		o.ready = nil
	}
	for len(o.buf) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		line, err := o.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it whole, or read it to its end and
			// drop it when it is over maxLine.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = o.r.ReadSlice('\n')
				if long != nil && len(long)+len(line) > maxLine {
					o.a.log.Warn("acp agent wrote a message over the limit; dropping it", "limit", maxLine)
					long = nil
				}
				if long != nil {
					long = append(long, line...)
				}
			}
			line = long
		}
		if err != nil {
			o.err = err
		}
		if len(line) == 0 {
			continue
		}
		consumed, passOn := o.handle(line)
		if consumed {
			continue
		}
		if passOn != nil {
			line = passOn
		}
		if len(line) >= sdkMaxLine {
			// The SDK cannot read it and ends the connection; say why.
			o.a.log.Error("acp agent wrote a message the SDK cannot read; the connection ends", "bytes", len(line), "limit", sdkMaxLine)
			o.tooLong = len(line)
		}
		o.buf = append(o.buf[:0], line...)
		if o.buf[len(o.buf)-1] != '\n' {
			o.buf = append(o.buf, '\n')
		}
	}
	n := copy(p, o.buf)
	o.buf = o.buf[n:]
	return n, nil
}

// handle maps a session/update (true: consumed) and announces a
// permission request (false: the SDK still answers it, given passOn, the
// request tagged with its Rein id, in place of line).
func (o *orderedReader) handle(line []byte) (consumed bool, passOn []byte) {
	var h head
	if err := json.Unmarshal(line, &h); err != nil {
		return false, nil // the SDK logs it
	}
	// Recorded once handled, and with the recorder held meanwhile: a
	// command the handling prompted (an answer to the permission request
	// just announced) is recorded after the line, and a replay that waits
	// for the record knows the line was handled.
	o.rec.mu.Lock()
	defer func() {
		o.rec.writeLocked("from", json.RawMessage(trimEOL(line)))
		o.rec.mu.Unlock()
	}()
	switch {
	case h.Method == acpsdk.ClientMethodSessionUpdate && len(h.ID) == 0:
		var n acpsdk.SessionNotification
		if err := json.Unmarshal(h.Params, &n); err != nil {
			o.a.log.Warn("undecodable acp session/update", "err", err)
			return true, nil
		}
		o.a.mu.Lock()
		o.a.updateLocked(n)
		o.a.mu.Unlock()
		return true, nil
	case h.Method == acpsdk.ClientMethodSessionRequestPermission && len(h.ID) != 0:
		var req acpsdk.RequestPermissionRequest
		if json.Unmarshal(h.Params, &req) != nil || req.Validate() != nil {
			return false, nil // the SDK refuses it without asking us
		}
		o.a.mu.Lock()
		id := o.a.announceLocked(req)
		o.a.mu.Unlock()
		return false, tagPermission(line, id)
	case h.Method == "" && len(h.ID) != 0:
		o.a.prompt.answered(h.ID, line)
	}
	return false, nil
}

// metaPermission is the _meta key under which the ordered reader hands the
// SDK a permission request's Rein id. The SDK's handler learns nothing else
// of the request's JSON-RPC id, and the SDK runs handlers in goroutines of
// their own, in any order: matching a handler to its announcement by tool
// call id, oldest first, gave two requests about one tool call each other's
// answers when their handlers ran the other way round.
const metaPermission = "rein.agentd/permissionId"

// tagPermission returns the session/request_permission line with
// params._meta[metaPermission] set to id (removed when id is "", so an
// agent cannot name another request's id); nil when the line cannot be
// rewritten (it can: it was decoded already), and it is passed on as it is.
func tagPermission(line []byte, id string) []byte {
	var msg, params, meta map[string]json.RawMessage
	if json.Unmarshal(line, &msg) != nil || json.Unmarshal(msg["params"], &params) != nil {
		return nil
	}
	if m := params["_meta"]; len(m) != 0 && json.Unmarshal(m, &meta) != nil {
		return nil
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	delete(meta, metaPermission)
	if id != "" {
		b, err := json.Marshal(id)
		if err != nil {
			return nil
		}
		meta[metaPermission] = b
	}
	var err error
	if params["_meta"], err = json.Marshal(meta); err != nil {
		return nil
	}
	if msg["params"], err = json.Marshal(params); err != nil {
		return nil
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return nil
	}
	return append(out, '\n')
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// recorder writes the transcript lines; safe for concurrent use.
type recorder struct {
	mu  sync.Mutex
	w   io.Writer
	log *slog.Logger
}

func (r *recorder) record(dir string, payload any) {
	if r.w == nil {
		return
	}
	b, err := json.Marshal(map[string]any{dir: payload})
	if err != nil {
		r.log.Warn("transcript", "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.w.Write(append(b, '\n')); err != nil {
		r.log.Warn("transcript", "err", err)
	}
}

// writeLocked is record with r.mu held by the caller.
func (r *recorder) writeLocked(dir string, payload any) {
	if r.w == nil {
		return
	}
	b, err := json.Marshal(map[string]any{dir: payload})
	if err != nil {
		r.log.Warn("transcript", "err", err)
		return
	}
	if _, err := r.w.Write(append(b, '\n')); err != nil {
		r.log.Warn("transcript", "err", err)
	}
}

// recordingWriter records what the SDK writes to the agent: one message
// per Write, as the SDK writes them.
type recordingWriter struct {
	w      io.Writer
	rec    *recorder
	prompt *promptReply
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.rec.record("to", json.RawMessage(trimEOL(p)))
	var h head
	isPrompt := json.Unmarshal(p, &h) == nil && h.Method == acpsdk.AgentMethodSessionPrompt && len(h.ID) != 0
	if isPrompt {
		w.prompt.sent(h.ID)
	}
	n, err := w.w.Write(p)
	if isPrompt {
		w.prompt.written()
	}
	return n, err
}

// promptReply is the agent's answer to the session/prompt in flight, as
// the ordered reader read it. The SDK can report a prompt whose answer it
// read as "peer disconnected" when the agent's output ends right after
// that answer: its waiting call selects at random between the answer and
// the connection's end. Serve then takes the answer from here, so the turn
// ends as the agent said rather than as an agent that died mid-turn.
type promptReply struct {
	mu     sync.Mutex
	id     string // the request's JSON-RPC id, compacted
	result *acpsdk.PromptResponse
	// wrote is closed once the write of the prompt's request returned
	// (whether or not it failed); nil when it was closed.
	wrote chan struct{}
}

// begin forgets the last prompt's answer: a prompt call that fails before
// its request is written must not take it.
func (r *promptReply) begin() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.id, r.result = "", nil
	r.wrote = make(chan struct{})
}

// written notes that the write of the prompt's request returned.
func (r *promptReply) written() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wrote != nil {
		close(r.wrote)
		r.wrote = nil
	}
}

// unwritten returns a channel closed once the prompt in flight's request
// is written, or nil if it was.
func (r *promptReply) unwritten() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wrote
}

// sent notes the id of a session/prompt request the SDK wrote.
func (r *promptReply) sent(id json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.id, r.result = string(bytes.TrimSpace(id)), nil
}

// answered keeps line's result when it answers the prompt in flight.
func (r *promptReply) answered(id json.RawMessage, line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id == "" || string(bytes.TrimSpace(id)) != r.id {
		return
	}
	var msg struct {
		Result *acpsdk.PromptResponse `json:"result"`
	}
	if json.Unmarshal(line, &msg) == nil && msg.Result != nil {
		r.result = msg.Result
	}
}

// take returns the answer read for the prompt in flight, if one was.
func (r *promptReply) take() (acpsdk.PromptResponse, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.result == nil {
		return acpsdk.PromptResponse{}, false
	}
	return *r.result, true
}

// gate drops log records once closed: the SDK's goroutines may log after
// Serve has returned (its receive goroutine logs the closed connection
// after signalling Done), and Serve's caller must not hear from them then.
type gate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// gatedHandler is a slog.Handler that forwards to h until its gate closes.
type gatedHandler struct {
	g *gate
	h slog.Handler
}

func (h gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.h.Enabled(ctx, l)
}

func (h gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	h.g.mu.RLock()
	defer h.g.mu.RUnlock()
	if h.g.closed {
		return nil
	}
	return h.h.Handle(ctx, r)
}

func (h gatedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return gatedHandler{h.g, h.h.WithAttrs(as)}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{h.g, h.h.WithGroup(name)}
}
