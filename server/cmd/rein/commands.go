package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printJSONLines prints each of list as one JSON object per line.
func printJSONLines[T any](w io.Writer, list []T) error {
	for _, v := range list {
		if err := printJSON(w, v); err != nil {
			return err
		}
	}
	return nil
}

func cmdSessions(c *cli.Context, e *env) error {
	if _, err := args(c, 0, 0); err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	if c.Bool("watch") {
		return watchSessions(c.Context, cl, c.String("project"), c.Bool("json"), e)
	}
	list, err := cl.Sessions(c.Context, c.String("project"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSONLines(e.stdout, list)
	}
	sessionTable(e.stdout, list, e.now(), e.color)
	return e.printed()
}

// streamLine is how --json prints a stream event: one object per line.
type streamLine struct {
	Event string          `json:"event"`
	ID    int64           `json:"id,omitempty"`
	Data  json.RawMessage `json:"data"`
}

// printStreamLine prints line as printJSON does, but writes big data (an
// artifact snapshot of a long tool output) as it is when json.Marshal
// would leave it so, rather than through json.Marshal (which copies it
// into its buffer as it compacts it) and fmt (which copies it again):
// rein watch --json of a 64 MB output peaked at 603 MiB.
func printStreamLine(w io.Writer, line streamLine) error {
	if len(line.Data) < 64<<10 || !printsAsIs(line.Data) {
		return printJSON(w, line)
	}
	head, err := json.Marshal(struct {
		Event string `json:"event"`
		ID    int64  `json:"id,omitempty"`
	}{line.Event, line.ID})
	if err != nil {
		return err
	}
	head = append(head[:len(head)-1], `,"data":`...)
	for _, b := range [][]byte{head, line.Data, []byte("}\n")} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// printsAsIs reports whether json.Marshal would write b, a json.RawMessage,
// as it is: b is valid JSON, holds no whitespace outside its strings
// (json.Compact's work) and nothing inside them that it escapes for HTML
// ('<', '>', '&', U+2028, U+2029). What rein-server sends always is.
func printsAsIs(b []byte) bool {
	if !protocol.HTMLSafe(b) || !json.Valid(b) {
		return false
	}
	// From string to string: whitespace is allowed only inside them. A
	// string ends at the first quote after it that an odd number of
	// backslashes does not escape.
	for {
		q := bytes.IndexByte(b, '"')
		if q < 0 {
			return !bytes.ContainsAny(b, " \t\r\n")
		}
		if bytes.ContainsAny(b[:q], " \t\r\n") {
			return false
		}
		b = b[q+1:]
		for {
			e := bytes.IndexByte(b, '"') // valid JSON: there is one
			n := 0
			for n < e && b[e-1-n] == '\\' {
				n++
			}
			b = b[e+1:]
			if n%2 == 0 {
				break
			}
		}
	}
}

// watchSessions follows the session stream and redraws the table after the
// snapshot and on every change (on a terminal, in place).
func watchSessions(ctx context.Context, cl *client.Client, project string, asJSON bool, e *env) error {
	sessions := map[string]*protocol.Session{}
	ready := false
	draw := func() {
		list := make([]protocol.Session, 0, len(sessions))
		for _, s := range sessions {
			list = append(list, *s)
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].CreatedAt != list[j].CreatedAt {
				return list[i].CreatedAt < list[j].CreatedAt
			}
			return list[i].ID < list[j].ID
		})
		if e.color {
			io.WriteString(e.stdout, "\x1b[H\x1b[2J")
		}
		sessionTable(e.stdout, list, e.now(), e.color)
		if !e.color {
			fmt.Fprintln(e.stdout)
		}
	}
	// With asJSON, the snapshot of the connection, printed once whole.
	var snapshot []streamLine
	return cl.StreamSessions(ctx, project, client.StreamOptions{OnRetry: retryNotice(e)}, func(ev client.SessionEvent) error {
		if asJSON {
			return printSessionEvent(e, ev, &snapshot)
		}
		switch ev.Name {
		case client.EventConnected:
			sessions, ready = map[string]*protocol.Session{}, false
			return nil
		case protocol.SSESessionSnapshot, protocol.SSESessionCreated:
			sessions[ev.Session.ID] = ev.Session
		case protocol.SSESessionUpdated:
			if s := sessions[ev.Updated.ID]; s != nil {
				if f := ev.Updated.Fields; f.Status != nil {
					s.Status = *f.Status
				}
				if f := ev.Updated.Fields; f.Summary != nil {
					s.Summary = f.Summary
				}
			}
		case protocol.SSESessionRemoved:
			delete(sessions, ev.Removed)
		case protocol.SSESnapshotComplete:
			ready = true
		}
		if ready && ev.Name != protocol.SSESessionSnapshot {
			draw()
		}
		return e.printed()
	})
}

// printSessionEvent prints a session stream event for sessions --watch
// --json. Every connection starts with a snapshot of every session, the
// stream having no resume: a session deleted while rein was away is only
// missing from it. So that a script can tell, and drop what it holds that
// the snapshot lacks, the snapshot is printed once whole, closed by
// snapshot_complete with "full":true (the server's says so; an older
// server's said only "rev":0, so rein sets it): a snapshot cut with its
// connection is never printed, as its lines would read as part of the
// next one. held keeps the connection's snapshot lines until then.
func printSessionEvent(e *env, ev client.SessionEvent, held *[]streamLine) error {
	switch ev.Name {
	case client.EventConnected:
		*held = (*held)[:0]
		return nil
	case protocol.SSESessionSnapshot:
		*held = append(*held, streamLine{Event: ev.Name, Data: ev.Data})
		return nil
	case protocol.SSESnapshotComplete:
		var done protocol.SnapshotComplete
		_ = json.Unmarshal(ev.Data, &done) // the rev, when it says one
		done.Full = true
		data, err := json.Marshal(done)
		if err != nil {
			return err
		}
		if err := printJSONLines(e.stdout, append(*held, streamLine{Event: ev.Name, Data: data})); err != nil {
			return err
		}
		clear(*held) // no longer needed: let the records go
		*held = (*held)[:0]
		return e.printed()
	}
	if err := printJSON(e.stdout, streamLine{Event: ev.Name, Data: ev.Data}); err != nil {
		return err
	}
	return e.printed()
}

// retryNotice says on stderr that a stream is reconnecting; the transcript
// on stdout stays clean.
func retryNotice(e *env) func(error, time.Duration) {
	return func(err error, wait time.Duration) {
		fmt.Fprintf(e.stderr, "rein: stream interrupted (%s); reconnecting in %s\n", cleanText(err.Error()), wait.Round(time.Millisecond))
	}
}

// writeDurably writes data to the file at path, which exists, and syncs
// it and its directory: a token file that a power loss empties would
// leave a session no sandbox can connect to.
func writeDurably(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func cmdCreate(c *cli.Context, e *env) error {
	id, cl, err := oneSession(c)
	if err != nil {
		return err
	}
	tokenFile := c.String("sandbox-token-file")
	// Fail before creating the session, not after: the token is shown once.
	if err := prepareTokenFile(tokenFile, os.O_EXCL); err != nil {
		return err
	}
	var req protocol.CreateSessionRequest
	if p := c.String("project"); p != "" {
		req.Project = &p
	}
	if c.IsSet("prompt") {
		// Set but empty is sent, so the server names the field.
		p := c.String("prompt")
		req.Prompt = &p
	}
	created, err := cl.CreateSessionWith(c.Context, id, req)
	if err != nil {
		if tokenFile != "" {
			os.Remove(tokenFile)
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Code == protocol.CodeConflict {
			// Maybe this very command created it and its answer was
			// lost: the token cannot be shown again, only replaced.
			return &client.Error{Status: ce.Status, Code: ce.Code,
				Message: fmt.Sprintf("%s (if you created it and do not have its sandbox token, rein token %s gives it a new one)", ce.Message, shellQuote(id))}
		}
		return err
	}
	if tokenFile != "" && created.SandboxToken != "" {
		if err := writeDurably(tokenFile, []byte(created.SandboxToken+"\n")); err != nil {
			// The token is shown once and only the file was to have it:
			// a session nobody can connect to is removed again, so the
			// command can simply be run again.
			if derr := cl.DeleteSession(c.Context, id); derr != nil {
				return fmt.Errorf("sandbox token file: %w; session %s was created but could not be removed (%v): get it a new sandbox token with POST /sessions/%s/token", err, id, derr, id)
			}
			os.Remove(tokenFile)
			return fmt.Errorf("sandbox token file: %w (session %s was removed again)", err, id)
		}
	}
	if c.Bool("json") {
		if tokenFile != "" {
			// The token is in the file: print the record alone, as the
			// server's record has no sandboxToken (not "sandboxToken":"").
			return printJSON(e.stdout, created.Session)
		}
		return printJSON(e.stdout, created)
	}
	w := e.stdout
	fmt.Fprintf(w, "created session %s (status %s, project %s)\n", created.ID, created.Status, orDash(created.Project))
	if created.PendingCommands > 0 {
		fmt.Fprintf(w, "initial prompt queued (command 1): the agent gets it when its sandbox connects\n")
	}
	if created.SandboxToken == "" {
		return nil
	}
	if tokenFile != "" {
		fmt.Fprintf(w, "sandbox token written to %s; start agentd with it:\n", tokenFile)
	} else {
		fmt.Fprintf(w, "sandbox token: %s\n", created.SandboxToken)
	}
	startAgentd(w, cl.Base(), created.ID, created.SandboxToken, tokenFile)
	// A session no sandbox connects to is removed: say so, or the user
	// who starts agentd later finds it gone without a reason.
	fmt.Fprintf(w, "If no sandbox connects within the server's bootstrap timeout (--bootstrap-timeout, default 3m), the session is removed.\n")
	return nil
}

// prepareTokenFile makes sure a sandbox token can be written to path
// ("" for none) before the server is asked for one it shows only once:
// it creates the file, mode 0600 (flag os.O_EXCL: it must not exist yet).
func prepareTokenFile(path string, flag int) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o600)
	if flag&os.O_EXCL != 0 && errors.Is(err, fs.ErrExist) {
		// Most often the file an earlier run left (the README's steps
		// run again after starting over): "file exists" alone does not
		// say that it is refused on purpose, nor what to do.
		return fmt.Errorf("sandbox token file %s exists already: rein create writes a new session's token to a new file and does not overwrite one (it may hold another session's token); remove it or name another file", path)
	}
	if err != nil {
		return fmt.Errorf("sandbox token file: %w", err)
	}
	if flag&os.O_EXCL == 0 && runtime.GOOS != "windows" {
		// rein token rewrites an existing file in place (a container
		// may have it bind-mounted), keeping its mode: one made with a
		// plain "echo ... > file" is readable by every user of the
		// machine, and the new token, the one that now works, would go
		// there. Refused before the rotation, so nothing changes.
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("sandbox token file: %w", err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			f.Close()
			return fmt.Errorf("sandbox token file %s is readable or writable by other users (mode %#o): the new token would leak; chmod 600 %s first, or name another file", path, perm, shellQuote(path))
		}
	}
	return f.Close()
}

// startAgentd prints the agentd command that uses sandbox token tok: with
// tokenFile, the file it was written to; without, the token is shown this
// once, and so are the commands that put it in a file first (a token in
// argv is visible to every process).
func startAgentd(w io.Writer, base, id, tok, tokenFile string) {
	agentd := fmt.Sprintf("agentd --server %s --session %s --token-file %%s -- YOUR-AGENT", shellQuote(base), shellQuote(id))
	if tokenFile != "" {
		abs, _ := filepath.Abs(tokenFile)
		fmt.Fprintf(w, "  %s\n", fmt.Sprintf(agentd, shellQuote(abs)))
		return
	}
	file := id + ".token"
	fmt.Fprintf(w, "It is shown only this once. Give it to agentd as a file (not in argv):\n")
	fmt.Fprintf(w, "  (umask 077; echo %s > %s)\n", tok, shellQuote(file))
	fmt.Fprintf(w, "  %s\n", fmt.Sprintf(agentd, shellQuote(file)))
}

// cmdToken rotates a session's sandbox token: for a token that leaked, or
// one that was lost (a create whose answer never arrived: the server keeps
// only the token's hash, so it cannot show it again).
func cmdToken(c *cli.Context, e *env) error {
	id, cl, err := oneSession(c)
	if err != nil {
		return err
	}
	tokenFile := c.String("sandbox-token-file")
	// Fail before rotating, not after: the old token stops working and
	// the new one is shown once.
	if err := prepareTokenFile(tokenFile, 0); err != nil {
		return err
	}
	tok, err := cl.RotateSandboxToken(c.Context, id)
	if err != nil {
		return err
	}
	if tokenFile != "" {
		if err := writeDurably(tokenFile, []byte(tok+"\n")); err != nil {
			return fmt.Errorf("sandbox token file: %w; session %s has a new sandbox token that could not be written: run rein token again", err, id)
		}
	}
	if c.Bool("json") {
		if tokenFile != "" {
			return printJSON(e.stdout, map[string]string{"session": id, "sandboxTokenFile": tokenFile})
		}
		return printJSON(e.stdout, protocol.SandboxToken{SandboxToken: tok})
	}
	if tokenFile != "" {
		fmt.Fprintf(e.stdout, "new sandbox token for %s written to %s (the old one no longer works); start agentd with it:\n", id, tokenFile)
	} else {
		fmt.Fprintf(e.stdout, "new sandbox token for %s: %s (the old one no longer works)\n", id, tok)
	}
	startAgentd(e.stdout, cl.Base(), id, tok, tokenFile)
	return nil
}

func cmdRemove(c *cli.Context, e *env) error {
	id, cl, err := oneSession(c)
	if err != nil {
		return err
	}
	if err := cl.DeleteSession(c.Context, id); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted session %s\n", id)
	return nil
}

func cmdPrompt(c *cli.Context, e *env) error {
	a, err := sessionArgs(c, 2, -1)
	if err != nil {
		return err
	}
	key := c.String("idempotency-key")
	if c.IsSet("idempotency-key") {
		if err := protocol.ValidateIdempotencyKey(key); err != nil {
			return usageError{"--idempotency-key: must be 1 to 255 visible ASCII characters (no spaces)"}
		}
	}
	cl, err := commandClient(c, e)
	if err != nil {
		return err
	}
	mine := key != ""
	if !mine {
		key = client.NewIdempotencyKey()
	}
	cmd := protocol.Command{Type: protocol.CommandPrompt, Text: strings.Join(a[1:], " "), Queue: c.Bool("queue")}
	res, err := cl.CommandWithKey(c.Context, a[0], key, cmd)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Code == protocol.CodeNoSandbox {
		// The server's message points to the request's "queue": true;
		// here that is the --queue flag.
		return &client.Error{Status: ce.Status, Code: ce.Code,
			Message: fmt.Sprintf("no sandbox is connected to session %q (rerun with --queue to have the prompt delivered when one connects)", a[0])}
	}
	var ue *client.UnconfirmedError
	if errors.As(err, &ue) {
		// The user's next move is to run the command again: with a new
		// key that is a second prompt if this one was stored.
		how := "run the same command with --idempotency-key " + shellQuote(ue.Key)
		if mine {
			how = "run the same command again (same --idempotency-key)"
		}
		return fmt.Errorf("%w; the prompt may have been stored all the same: to send it again without a second copy, %s", err, how)
	}
	if err != nil {
		return err
	}
	if mine && res.Replayed {
		fmt.Fprintf(e.stdout, "prompt already sent to %s under this key (command %d): not sent again\n", a[0], res.ID)
		return nil
	}
	fmt.Fprintf(e.stdout, "prompt sent to %s (command %d)\n", a[0], res.ID)
	return nil
}

func cmdAbort(c *cli.Context, e *env) error {
	a, err := sessionArgs(c, 1, 1)
	if err != nil {
		return err
	}
	cl, err := commandClient(c, e)
	if err != nil {
		return err
	}
	id, err := cl.Abort(c.Context, a[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "abort sent to %s (command %d)\n", a[0], id)
	return nil
}

// cmdAnswer answers a permission request. The option defaults to the
// request's allow_once option (approve) or reject_once option (deny),
// looked up among its options (pendingRequest): never an "always" option, which
// would answer later requests too without asking (agents such as Gemini
// list "allow for this session" first). A deny for a request that offers
// no reject_once option cancels it. The answer names the request's seq
// (the newest pending request with the id), so it never reaches a later
// request with the same id.
func cmdAnswer(c *cli.Context, e *env, approve bool) error {
	maxArgs := 2
	if approve {
		maxArgs = 3
	}
	a, err := sessionArgs(c, 2, maxArgs)
	if err != nil {
		return err
	}
	cl, err := commandClient(c, e)
	if err != nil {
		return err
	}
	session, request := a[0], a[1]
	seq, opts, err := pendingRequest(c.Context, cl, session, request)
	if err != nil {
		return err
	}
	var ids []string
	for _, o := range opts {
		ids = append(ids, o.ID)
	}
	option := ""
	want := "reject_once"
	if approve {
		want = "allow_once"
	}
	if len(a) == 3 {
		option = a[2]
		if len(opts) > 0 && !contains(ids, option) {
			return fmt.Errorf("permission request %q has no option %q (options: %s)", request, option, strings.Join(ids, ", "))
		}
	} else {
		for _, o := range opts {
			if o.Kind == want {
				option = o.ID
				break
			}
		}
	}
	verb := "denied"
	if approve {
		verb = "approved"
	}
	if option == "" {
		if approve {
			return fmt.Errorf("permission request %q offers no allow_once option; name one: rein approve %s %s OPTION (options: %s)", request, session, request, strings.Join(ids, ", "))
		}
		id, err := cl.CancelPermissionAt(c.Context, session, request, seq)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s %s: no reject_once option, request cancelled (command %d)\n", verb, request, id)
		return nil
	}
	// By the request's seq too: should its agent resolve it and ask
	// another under its id before this arrives, the server refuses the
	// answer rather than apply it to the request not read here.
	id, err := cl.AnswerPermissionAt(c.Context, session, request, seq, option)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s with option %s (command %d)\n", verb, request, option, id)
	return nil
}

// pendingRequest finds the permission request an answer is for: its seq
// (the newest with the id) and options. It looks in the inbox first (GET
// /approvals: the pending requests, a handful), and only when the request
// is not there in the session's artifacts, which say why it cannot be
// answered (never asked, or no longer pending), or find it when this
// replica has not heard of it yet. The artifacts are the whole
// transcript: read for every answer, a long session's cost as much
// memory as the transcript and could take longer than a request may
// (client.DefaultRequestTimeout), and the request could not be answered
// at all; read when needed, they are read a page at a time, each page a
// request, keeping only the request's. The answer names the seq, so an
// inbox a moment old cannot direct it at another request under the id.
func pendingRequest(ctx context.Context, cl *client.Client, session, request string) (int64, []permissionOption, error) {
	list, err := cl.Approvals(ctx, "")
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		list, err = nil, nil // a server from before the inbox: the artifacts say
	}
	if err != nil {
		return 0, nil, err
	}
	var found *protocol.Approval
	for i, p := range list {
		if p.SessionID == session && p.RequestID == request && p.Seq > 0 && (found == nil || p.Seq > found.Seq) {
			found = &list[i]
		}
	}
	if found != nil {
		opts := make([]permissionOption, len(found.Options))
		for i, o := range found.Options {
			opts[i] = permissionOption{ID: o.ID, Name: o.Name, Kind: string(o.Kind)}
		}
		return found.Seq, opts, nil
	}
	// A page at a time, keeping only the request's artifacts: the
	// newest (highest seq) with the id, as it is at the end (a later
	// page may bring one again, changed).
	var perm *protocol.Artifact
	err = cl.ArtifactPages(ctx, session, 0, func(page []*protocol.Artifact) error {
		for _, art := range page {
			if art.Type == protocol.ArtifactPermission && art.ID == request && (perm == nil || art.Seq >= perm.Seq) {
				perm = art
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if perm == nil {
		return 0, nil, fmt.Errorf("session %s has no permission request %q", session, request)
	}
	if st := protocol.PermissionStatus(perm.String("status")); st != protocol.PermissionPending {
		return 0, nil, fmt.Errorf("permission request %q is already %s", request, st)
	}
	return perm.Seq, permissionOptions(perm), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func cmdWatch(c *cli.Context, e *env) error {
	id, cl, err := oneSession(c)
	if err != nil {
		return err
	}
	return watch(c.Context, cl, id, watchOptions{json: c.Bool("json"), untilIdle: c.Bool("until-idle"), grace: c.Duration("idle-grace")}, e)
}

type watchOptions struct {
	json      bool
	untilIdle bool
	grace     time.Duration
	// stream tunes reconnects (tests make them fast).
	stream client.StreamOptions
}

// errIdle ends a watch --until-idle.
var errIdle = errors.New("idle")

// watch follows the artifact stream of session and renders it. With
// untilIdle it returns once, after the replay, no turn has been running
// for grace (and at least one turn exists).
func watch(ctx context.Context, cl *client.Client, session string, o watchOptions, e *env) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var idle atomic.Bool
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	model := client.NewTranscript()
	if o.json {
		// The events are printed as they come: the model serves only
		// --until-idle, which needs the turns. The whole of it cost
		// as much memory as the session (a tool's output of a GiB).
		model = client.NewTranscriptOf(protocol.ArtifactTurn)
	}
	out := newTranscript(e.stdout, e.color, session)
	defer out.Close()
	replayed := false
	so := o.stream
	notice := retryNotice(e)
	so.OnRetry = func(err error, wait time.Duration) {
		// The connection is gone: a turn may start while rein is away,
		// unseen. The grace begun before counts no more; the next
		// connection's replay judges again. (Called between
		// connections, on the goroutine that runs the handler.)
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		notice(err, wait)
	}
	err := cl.StreamArtifacts(ctx, session, so, func(ev client.ArtifactEvent) error {
		a, err := model.Apply(ev)
		if err != nil {
			return err
		}
		if o.json {
			line := streamLine{Event: ev.Name, ID: ev.Rev, Data: ev.Data}
			if ev.Name == client.EventConnected {
				// Where a connection begins, so that a script can tell
				// which artifacts a replay sent: a full one's
				// snapshot_complete drops the others, and a replay cut
				// with its connection is not the one that ends.
				line.Data = json.RawMessage(`{}`)
				if ev.Replaced {
					line.Data = json.RawMessage(`{"replaced":true}`)
				}
			}
			if err := printStreamLine(e.stdout, line); err != nil {
				return err
			}
		} else {
			out.Event(ev, a)
			if err := e.printed(); err != nil {
				return err
			}
		}
		switch ev.Name {
		case client.EventConnected:
			// A reconnection replays again: judged mid-replay, the
			// model is half old, half new, and what the transcript
			// holds back until the replay ends would never be printed.
			replayed = false
		case protocol.SSESnapshotComplete:
			replayed = true
		}
		if !o.untilIdle || !replayed {
			return nil
		}
		// Counted by the model as it applies events: counting here
		// cost the whole transcript on every event.
		turns, running := model.Turns()
		switch {
		case running > 0 || turns == 0:
			if timer != nil {
				timer.Stop()
				timer = nil
			}
		case o.grace <= 0:
			return errIdle
		case timer == nil:
			timer = time.AfterFunc(o.grace, func() { idle.Store(true); cancel() })
		}
		return nil
	})
	if errors.Is(err, errIdle) || (idle.Load() && errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}
