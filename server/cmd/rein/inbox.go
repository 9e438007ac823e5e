package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// cmdInbox is "rein inbox": list the pending permission requests of every
// session, each with its REF (approvalRef), or follow them (--follow).
// Its subcommands approve and deny answer one (cmdInboxAnswer); any other
// argument is an unknown command (withSubcommands).
func cmdInbox(c *cli.Context, e *env) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	project := c.String("project")
	if c.Bool("follow") {
		return followInbox(c.Context, cl, project, c.Bool("json"), e)
	}
	list, err := cl.Approvals(c.Context, project)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		refd := make([]refApproval, len(list))
		for i, p := range list {
			refd[i] = refApproval{p, approvalRef(p)}
		}
		return printJSONLines(e.stdout, refd)
	}
	inboxTable(e.stdout, list, e.now(), e.color)
	return e.printed()
}

// refApproval is a line of rein inbox --json: the request and its REF.
type refApproval struct {
	protocol.Approval
	Ref string `json:"ref"`
}

// approvalRef is the short reference rein inbox shows for p, which rein
// inbox approve/deny take: 7 hex digits of a SHA-256 of its session,
// request id, the time the server stored it and its seq (the same on every
// replica and after a restart: the stored event's, and the fold's; the
// seq tells apart two requests of one id stored in one millisecond). Not p's place in the list,
// which shifts as the requests before it end, and not its id alone, which
// its agent names another request with once p is resolved (a restarted
// agent counts from the start): the request that comes after has another
// REF, and one read before answers nothing.
func approvalRef(p protocol.Approval) string {
	h := sha256.New()
	for _, part := range []string{p.SessionID, p.RequestID, strconv.FormatInt(p.RequestedAt, 10), strconv.FormatInt(p.Seq, 10)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:refLen]
}

const refLen = 7

// cmdInboxAnswer is "rein inbox approve REF|REQUEST [OPTION]" and "rein
// inbox deny REF|REQUEST": answer a request by its REF or id.
func cmdInboxAnswer(c *cli.Context, e *env, approve bool) error {
	maxArgs := 1
	if approve {
		maxArgs = 2
	}
	a, err := args(c, 1, maxArgs)
	if err != nil {
		return err
	}
	if isNumber(a[0]) {
		// What rein inbox used to number the rows with. A REF is
		// never this short; a request id that is a number is named
		// SESSION/REQUEST.
		return usageError{fmt.Sprintf("rein inbox answers a request by the REF rein inbox shows (or SESSION/REQUEST), not by a number: the list shifts as requests end, and %s may not be the request you read", a[0])}
	}
	cl, err := commandClient(c, e)
	if err != nil {
		return err
	}
	return answerFromInbox(c.Context, cl, lineageString(c, "project"), approve, a[0], a[1:], e)
}

// lineageString is the value of flag name that the innermost command set
// ("rein inbox approve -p web 2" or "rein inbox -p web approve 2"), ""
// when none did. c.String alone reads the innermost command that
// defines the flag, set or not.
func lineageString(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if x.Command != nil && x.IsSet(name) {
			return x.String(name)
		}
	}
	return ""
}

// isNumber says whether s is a short decimal number: an inbox position.
func isNumber(s string) bool {
	if s == "" || len(s) >= refLen {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// answerFromInbox answers the pending request (of --project's inbox) named
// ref: its REF, its request id, or SESSION/REQUEST when the id is pending
// in several sessions. Without an option it picks the one-time option
// (allow_once or reject_once).
func answerFromInbox(ctx context.Context, cl *client.Client, project string, approve bool, ref string, option []string, e *env) error {
	list, err := cl.Approvals(ctx, project)
	if err != nil {
		return err
	}
	var match []protocol.Approval
	for _, p := range list {
		if approvalRef(p) == ref || p.RequestID == ref || p.SessionID+"/"+p.RequestID == ref {
			match = append(match, p)
		}
	}
	switch {
	case len(match) == 0:
		return fmt.Errorf("no pending request %q in the inbox: answered or withdrawn since it was listed? rein inbox shows what waits now", ref)
	case len(match) > 1:
		var names []string
		for _, p := range match {
			names = append(names, approvalRef(p)+" ("+cleanLine(p.SessionID+"/"+p.RequestID)+")")
		}
		return fmt.Errorf("%q names several pending requests; name one by its REF: %s", ref, strings.Join(names, ", "))
	}
	p := match[0]
	if p.Answer != nil {
		// Answered already (from another device, say), and its agent
		// has not taken the answer yet: the server would refuse a
		// second one.
		return fmt.Errorf("request %s/%s was %s (command %d, by %s): it waits for its agent to take that answer; nothing sent",
			p.SessionID, p.RequestID, answerWords(p.Answer), p.Answer.CommandID, p.Answer.AnsweredBy)
	}
	want, verb := protocol.RejectOnce, "denied"
	if approve {
		want, verb = protocol.AllowOnce, "approved"
	}
	var ids []string
	chosen := ""
	for _, o := range p.Options {
		ids = append(ids, o.ID)
		if len(option) == 1 && o.ID == option[0] {
			chosen = o.ID
		}
		if len(option) == 0 && o.Kind == want && chosen == "" {
			chosen = o.ID
		}
	}
	if chosen == "" {
		if len(option) == 1 {
			return fmt.Errorf("request %s/%s has no option %q (options: %s)", p.SessionID, p.RequestID, option[0], strings.Join(ids, ", "))
		}
		return fmt.Errorf("request %s/%s offers no %s option; name one: rein inbox approve %s OPTION (options: %s)",
			p.SessionID, p.RequestID, want, approvalRef(p), strings.Join(ids, ", "))
	}
	// By its seq too: the check above is a moment old, and should the
	// request end and its agent ask another under its id meanwhile, the
	// server refuses the answer (a server before seq lists none, 0, and
	// takes the answer by id).
	id, err := cl.AnswerPermissionAt(ctx, p.SessionID, p.RequestID, p.Seq, chosen)
	if err != nil {
		return err
	}
	// Which request, by every name the user may have read it under.
	fmt.Fprintf(e.stdout, "%s %s %s/%s \"%s\" with option %s (command %d)\n", verb, approvalRef(p), p.SessionID, p.RequestID, cleanLine(p.Title), chosen, id)
	return nil
}

// answerWords says what answer an was: "answered already with option
// X" or "dismissed already".
func answerWords(an *protocol.ApprovalAnswer) string {
	if an.Outcome == protocol.OutcomeCancelled {
		return "dismissed already"
	}
	return "answered already with option " + cleanLine(an.OptionID)
}

// followInbox prints the inbox after every (re)connection's snapshot and
// a line per change, then the numbered list again.
func followInbox(ctx context.Context, cl *client.Client, project string, asJSON bool, e *env) error {
	pending := map[string]protocol.Approval{} // by session/request
	var fresh map[string]protocol.Approval
	ready := false
	draw := func() {
		list := make([]protocol.Approval, 0, len(pending))
		for _, p := range pending {
			list = append(list, p)
		}
		// In the order GET /approvals lists them, as rein inbox shows
		// them, not in arrival order (requests of one millisecond
		// arrive in the agent's order).
		sort.Slice(list, func(i, j int) bool {
			x, y := list[i], list[j]
			if x.RequestedAt != y.RequestedAt {
				return x.RequestedAt < y.RequestedAt
			}
			if x.SessionID != y.SessionID {
				return x.SessionID < y.SessionID
			}
			return x.RequestID < y.RequestID
		})
		inboxTable(e.stdout, list, e.now(), e.color)
	}
	opts := client.StreamOptions{OnRetry: retryNotice(e)}
	return cl.StreamApprovals(ctx, project, opts, func(ev client.ApprovalEvent) error {
		if asJSON && ev.Name != client.EventConnected {
			var data any
			switch {
			case ev.Approval != nil:
				data = ev.Approval
			case ev.Resolved != nil:
				data = ev.Resolved
			case ev.Complete != nil:
				data = ev.Complete
			}
			// As rein watch --json prints its events: with the id a
			// script resumes after (the README promises it).
			return printJSON(e.stdout, struct {
				Event string `json:"event"`
				ID    int64  `json:"id,omitempty"`
				Data  any    `json:"data"`
			}{ev.Name, ev.Rev, data})
		}
		switch ev.Name {
		case client.EventConnected:
			fresh = map[string]protocol.Approval{}
		case protocol.SSEApprovalSnapshot:
			k := ev.Approval.SessionID + "/" + ev.Approval.RequestID
			fresh[k] = *ev.Approval
		case protocol.SSEApprovalAdded:
			k := ev.Approval.SessionID + "/" + ev.Approval.RequestID
			pending[k] = *ev.Approval
			if ready {
				fmt.Fprintf(e.stdout, "+ %s: %s\n", cleanLine(k), cleanLine(ev.Approval.Title))
			}
		case protocol.SSEApprovalAnswered:
			k := ev.Approval.SessionID + "/" + ev.Approval.RequestID
			pending[k] = *ev.Approval
			if an := ev.Approval.Answer; ready && an != nil {
				what := "answered " + an.OptionID
				if an.Outcome == protocol.OutcomeCancelled {
					what = "dismissed"
				}
				fmt.Fprintf(e.stdout, "~ %s: %s by %s (command %d), waiting for the agent\n", cleanLine(k), cleanLine(what), cleanLine(an.AnsweredBy), an.CommandID)
			}
		case protocol.SSEApprovalResolved:
			k := ev.Resolved.SessionID + "/" + ev.Resolved.RequestID
			delete(pending, k)
			if ready {
				d := ev.Resolved.Decision
				fmt.Fprintf(e.stdout, "- %s: %s by %s\n", cleanLine(k), cleanLine(string(d.Status)), cleanLine(d.DecidedBy))
			}
		case protocol.SSESnapshotComplete:
			if ev.Complete.Full {
				pending = fresh
			}
			ready = true
			draw()
			return e.printed()
		default:
			return nil // an event of a newer server: nothing to show
		}
		if ready && ev.Name != client.EventConnected && ev.Name != protocol.SSEApprovalSnapshot {
			draw()
		}
		return e.printed()
	})
}

// inboxTable prints the inbox: the REF is what "rein inbox approve REF"
// takes.
func inboxTable(w io.Writer, list []protocol.Approval, now time.Time, color bool) {
	p := painter(color)
	if len(list) == 0 {
		fmt.Fprintln(w, "inbox empty: nothing waits for you")
		return
	}
	rows := [][]string{{"REF", "SESSION", "REQUEST", "WAITING", "TOOL", "TITLE", "OPTIONS"}}
	for _, a := range list {
		tool := "-"
		if a.Tool != nil {
			tool = a.Tool.Name
			if tool == "" {
				tool = a.Tool.Title
			}
		}
		var opts []string
		for _, o := range a.Options {
			opts = append(opts, o.ID+"("+string(o.Kind)+")")
		}
		choice := strings.Join(opts, " ")
		if an := a.Answer; an != nil {
			// Nothing to choose: someone did, and the agent has
			// not taken the answer yet.
			what := an.OptionID
			if an.Outcome == protocol.OutcomeCancelled {
				what = "dismissed"
			}
			choice = fmt.Sprintf("answered: %s (command %d), waiting for the agent", what, an.CommandID)
		}
		rows = append(rows, []string{approvalRef(a), cleanLine(a.SessionID), cleanLine(a.RequestID), age(now, a.RequestedAt), truncate(cleanLine(tool), 20), truncate(cleanLine(a.Title), 50), cleanLine(choice)})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for n, r := range rows {
		var b strings.Builder
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2)
			}
			if n == 0 {
				cell = p.paint(styleBold, cell)
			}
			b.WriteString(cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// cmdVerify is "rein verify SESSION": recompute the session's turn digests
// from its exported event log and compare them with the recorded ones.
// Exit status 1 names the first turn that does not match.
func cmdVerify(c *cli.Context, e *env) error {
	// The server pages GET /events by 1 to 5,000; a 0 or negative size
	// was sent as no limit and the server's default used instead.
	if n := c.Int("page-size"); n < 1 || n > 5000 {
		return usageError{fmt.Sprintf("--page-size %d: must be 1 to 5000 (events per page of GET /sessions/:id/events)", n)}
	}
	id, cl, err := oneSession(c)
	if err != nil {
		return err
	}
	v, err := cl.Verify(c.Context, id, c.Int("page-size"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(e.stdout, v); err != nil {
			return err
		}
	}
	if m := v.FirstMismatch; m != nil {
		recorded := "computed by the server"
		if m.DigestRecorded {
			recorded = "recorded when it ended"
		}
		return fmt.Errorf("session %s: turn %s (log positions %d-%d) does not match: digest %s %s, the log now gives %s; the stored events were changed at or before position %d",
			id, m.ID, m.StartPos, *m.EndPos, *m.Digest, recorded, v.Computed, *m.EndPos)
	}
	if !c.Bool("json") {
		fmt.Fprintf(e.stdout, "session %s: %d events, %d ended turns verified (%d digests recorded when the turn ended)\n", id, v.Events, v.Verified, v.Recorded)
		if v.Recorded < v.Turns {
			fmt.Fprintf(e.stdout, "note: %d turns have no recorded digest; their digest was computed from the log as it is and proves nothing\n", v.Turns-v.Recorded)
		}
	}
	return e.printed()
}
