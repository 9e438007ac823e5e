package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/rein-ai/rein/protocol"
)

// Approvals lists the pending permission requests across sessions, oldest
// first; project "" means all.
func (c *Client) Approvals(ctx context.Context, project string) ([]protocol.Approval, error) {
	path := "/approvals"
	if project != "" {
		path += "?project=" + url.QueryEscape(project)
	}
	var out []protocol.Approval
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ApprovalHistory lists recent decisions, newest first (at most limit; 0
// means the server's default).
func (c *Client) ApprovalHistory(ctx context.Context, project string, limit int) ([]protocol.Decision, error) {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/approvals/history"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []protocol.Decision
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ApprovalEvent is one event of the approvals stream, decoded. An event
// this client does not know (one a newer server sends) comes with Name
// and Rev only: skip it.
type ApprovalEvent struct {
	// Name is EventConnected or the SSE event name
	// (protocol.SSEApprovalSnapshot, ...).
	Name string
	// Rev is the event's revision (its SSE id), what a resume starts
	// after; 0 for events sent without one (EventConnected, snapshots).
	Rev int64
	// Approval is set for approval_snapshot, approval_added and
	// approval_answered (the request as it now is, with its Answer:
	// replace the one held).
	Approval *protocol.Approval
	// Resolved is set for approval_resolved.
	Resolved *protocol.ApprovalResolved
	// Complete is set for snapshot_complete: Full says the approvals since
	// EventConnected were a whole snapshot (replace what you have).
	Complete *protocol.ApprovalsComplete
}

// StreamApprovals follows GET /approvals/stream (only project's sessions
// when project is not ""), resuming after the last event id on reconnect,
// with the same reconnects and endings as StreamArtifacts.
func (c *Client) StreamApprovals(ctx context.Context, project string, opts StreamOptions, fn func(ApprovalEvent) error) error {
	path := "/approvals/stream"
	if project != "" {
		path += "?project=" + url.QueryEscape(project)
	}
	var last int64
	return c.follow(ctx, path, opts, &last, nil, func(ev rawEvent) error {
		out := ApprovalEvent{Name: ev.Name}
		out.Rev, _ = strconv.ParseInt(ev.ID, 10, 64)
		var err error
		switch ev.Name {
		case protocol.SSEApprovalSnapshot, protocol.SSEApprovalAdded, protocol.SSEApprovalAnswered:
			var p struct {
				Approval protocol.Approval `json:"approval"`
			}
			err = json.Unmarshal(ev.Data, &p)
			out.Approval = &p.Approval
		case protocol.SSEApprovalResolved:
			var r protocol.ApprovalResolved
			err = json.Unmarshal(ev.Data, &r)
			out.Resolved = &r
		case protocol.SSESnapshotComplete:
			var d protocol.ApprovalsComplete
			err = json.Unmarshal(ev.Data, &d)
			out.Complete = &d
			if err == nil && d.Full {
				// The revision is the serving process's own, from a
				// random start: after a restart, or on another
				// replica, it may be below the ids seen so far. Resume
				// from where this snapshot put the client, not from
				// an id that process never issued.
				last = d.Rev
			}
		}
		if err != nil {
			return fmt.Errorf("%s: bad payload: %w", ev.Name, err)
		}
		return fn(out)
	})
}

// Turns lists a session's turns with their digests.
func (c *Client) Turns(ctx context.Context, id string) ([]protocol.Turn, error) {
	var out []protocol.Turn
	err := c.Do(ctx, http.MethodGet, sessionPath(id)+"/turns", nil, &out)
	return out, err
}

// EventLog reads one page of a session's stored event log: entries after
// pos after, at most limit (0: the server's default). Each Event holds
// the stored bytes exactly.
func (c *Client) EventLog(ctx context.Context, id string, after int64, limit int) (protocol.EventsPage, error) {
	out, _, err := c.eventLogPage(ctx, id, after, limit)
	return out, err
}

// eventLogPage is EventLog that also returns the createdAt of the session
// the page was read from (protocol.HeaderSessionCreated; 0 from a server
// that does not say).
func (c *Client) eventLogPage(ctx context.Context, id string, after int64, limit int) (protocol.EventsPage, int64, error) {
	var out protocol.EventsPage
	resp, err := c.exchange(ctx, http.MethodGet, pagePath(id, "events", after, limit), nil, nil, &out)
	if err != nil {
		return out, 0, err
	}
	return out, sessionCreated(resp), nil
}

// pagePath is the path of a page of a session's list (events,
// artifacts) after position or revision after, at most limit (0: the
// server's default).
func pagePath(id, list string, after int64, limit int) string {
	path := sessionPath(id) + "/" + list + "?after=" + strconv.FormatInt(after, 10)
	if limit > 0 {
		path += "&limit=" + strconv.Itoa(limit)
	}
	return path
}

// sessionCreated is the createdAt of the session an answer was read from
// (protocol.HeaderSessionCreated; 0 from a server that does not say).
func sessionCreated(resp *http.Response) int64 {
	created, _ := strconv.ParseInt(resp.Header.Get(protocol.HeaderSessionCreated), 10, 64)
	return created
}

// Chain recomputes turn digests over an event log: it returns, for each
// position in ends (ascending, a position may repeat), the hex digest
// after the event at that position, as server/README.md "Turn digests"
// defines it. The events must be the whole log from its first entry, in
// order.
func Chain(events []protocol.LoggedEvent, ends []int64) []string {
	c := newChain(ends)
	for _, e := range events {
		c.add(e)
	}
	return c.digests
}

// chain is Chain fed one event at a time, so that a log read a page at a
// time is hashed as it comes and never held whole.
type chain struct {
	h       hash.Hash
	last    [32]byte
	ends    []int64
	digests []string
}

func newChain(ends []int64) *chain {
	c := &chain{h: sha256.New(), ends: ends, digests: make([]string, 0, len(ends))}
	c.h.Write(c.last[:])
	return c
}

// add hashes the log's next event, and cuts a digest at each end that
// names its position.
func (c *chain) add(e protocol.LoggedEvent) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Pos))
	c.h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(e.Instance)))
	c.h.Write(n[:])
	c.h.Write([]byte(e.Instance))
	binary.BigEndian.PutUint64(n[:], uint64(len(e.Event)))
	c.h.Write(n[:])
	c.h.Write(e.Event)
	for len(c.ends) > 0 && c.ends[0] == e.Pos {
		copy(c.last[:], c.h.Sum(nil))
		c.h.Reset()
		c.h.Write(c.last[:])
		c.digests = append(c.digests, hex.EncodeToString(c.last[:]))
		c.ends = c.ends[1:]
	}
}

// Verification is what Verify found.
type Verification struct {
	Session string `json:"session"`
	Events  int    `json:"events"`
	// Turns is how many turns have a digest; Recorded how many of those
	// digests the server recorded when the turn ended (the others prove
	// nothing) and Verified how many matched the log.
	Turns    int `json:"turns"`
	Recorded int `json:"recorded"`
	Verified int `json:"verified"`
	// FirstMismatch is the first turn (in log order) whose digest does not
	// match the log; nil when every one matches.
	FirstMismatch *protocol.Turn `json:"firstMismatch"`
	// Computed is the digest the log gives for FirstMismatch.
	Computed string `json:"computed,omitempty"`
}

// Verify recomputes a session's turn digests from its exported event log
// (GET /sessions/:id/events, page by page) and compares them with the
// digests of GET /sessions/:id/turns.
func (c *Client) Verify(ctx context.Context, id string, pageSize int) (Verification, error) {
	v := Verification{Session: id}
	// The turns and each page of the log are read by requests of their
	// own, and a session deleted and created again under the id between
	// two of them has another history: its digests would not match the
	// turns read of the old one, and Verify would report a stored log
	// changed. Every page names its session; the session's createdAt,
	// read before the turns, must be each page's.
	sess, err := c.Session(ctx, id)
	if err != nil {
		return v, err
	}
	turns, err := c.Turns(ctx, id)
	if err != nil {
		return v, err
	}
	var ended []protocol.Turn
	for _, t := range turns {
		if t.EndPos != nil && t.Digest != nil {
			ended = append(ended, t)
		}
	}
	slices.SortStableFunc(ended, func(a, b protocol.Turn) int {
		if *a.EndPos != *b.EndPos {
			return int(*a.EndPos - *b.EndPos)
		}
		return int(a.Seq - b.Seq)
	})
	ends := make([]int64, len(ended))
	for i, t := range ended {
		ends[i] = *t.EndPos
	}
	// Hashed page by page: holding the log to hash it at the end took
	// as much memory as the log, up to --max-session-bytes (1 GiB).
	chain := newChain(ends)
	var after int64
	for {
		page, created, err := c.eventLogPage(ctx, id, after, pageSize)
		if err != nil {
			return v, err
		}
		if created != 0 && created != sess.CreatedAt {
			return v, fmt.Errorf("verify %s: the session was deleted and created again while it was verified (createdAt %d, then %d); verify it again", id, sess.CreatedAt, created)
		}
		for _, e := range page.Events {
			chain.add(e)
		}
		v.Events += len(page.Events)
		if page.Next == nil {
			break
		}
		if *page.Next <= after {
			return v, fmt.Errorf("verify %s: the event log did not advance past %d", id, after)
		}
		after = *page.Next
	}
	got := chain.digests
	v.Turns = len(ended)
	for i, t := range ended {
		if t.DigestRecorded {
			v.Recorded++
		}
		computed := ""
		if i < len(got) {
			computed = got[i]
		}
		if computed != *t.Digest {
			t := t
			v.FirstMismatch, v.Computed = &t, computed
			return v, nil
		}
		v.Verified++
	}
	return v, nil
}
