package codex

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// permission is an approval request of the app-server waiting for its
// permission_response.
type permission struct {
	rpcID    json.RawMessage
	decision map[string]json.RawMessage // Rein option id -> Codex decision
	cancel   json.RawMessage            // the answer when dismissed
	item     *itemState                 // the tool it asks about
}

// decisionOption describes how a Codex decision is offered in Rein.
type decisionOption struct {
	name string
	kind protocol.OptionKind
}

var decisionOptions = map[string]decisionOption{
	"accept":                        {"Allow", protocol.AllowOnce},
	"acceptForSession":              {"Allow for this session", protocol.AllowAlways},
	"acceptWithExecpolicyAmendment": {"Always allow commands like this", protocol.AllowAlways},
	"applyNetworkPolicyAmendment":   {"Always allow this host", protocol.AllowAlways},
	"decline":                       {"Deny", protocol.RejectOnce},
	"cancel":                        {"Deny and stop the turn", protocol.RejectOnce},
}

// defaultDecisions is what both approval kinds accept when the request
// does not list its own.
var defaultDecisions = []json.RawMessage{
	json.RawMessage(`"accept"`), json.RawMessage(`"acceptForSession"`),
	json.RawMessage(`"decline"`), json.RawMessage(`"cancel"`),
}

// request handles a request from the app-server: approvals become
// permission_requested; anything else agentd cannot serve is refused so
// the app-server does not wait forever.
func (a *adapter) request(m *message) {
	switch m.Method {
	case "item/commandExecution/requestApproval", "item/fileChange/requestApproval":
		var p approvalParams
		if a.decode(m, &p) {
			if t := a.turnFor(p.TurnID); t != nil {
				a.approval(t, m, p)
				return
			}
		}
		// No turn to ask in: refuse the action.
		a.send(outgoing{ID: m.ID, Result: map[string]any{"decision": "decline"}})
	default:
		a.log.Warn("codex request agentd does not serve", "method", m.Method)
		a.send(outgoing{ID: m.ID, Error: &rpcError{Code: codeMethodNotFound, Message: "agentd does not serve " + m.Method}})
	}
}

func (a *adapter) approval(t *turnState, m *message, p approvalParams) {
	a.permSeq++
	id := t.id + ":perm-" + strconv.Itoa(a.permSeq)
	st := t.items[p.ItemID]
	toolID := itemID(t, p.ItemID)
	title := "Apply file changes"
	input := map[string]any{}
	if m.Method == "item/commandExecution/requestApproval" {
		title = "Run a command"
		if p.Command != nil {
			title = commandTitle(*p.Command, p.CommandActions)
			input["command"] = *p.Command
		}
		if p.Cwd != nil {
			input["cwd"] = *p.Cwd
		}
	} else if p.GrantRoot != nil {
		input["grantRoot"] = *p.GrantRoot
	}
	if p.Reason != nil && *p.Reason != "" {
		input["reason"] = *p.Reason
	}
	if st == nil || !st.started {
		// Approval before item/started: report the tool it is about.
		if st == nil {
			st = &itemState{id: toolID}
			t.items[p.ItemID] = st
		}
		name, kind := "shell", "execute"
		if m.Method == "item/fileChange/requestApproval" {
			name, kind = "apply_patch", "edit"
		}
		a.startTool(st, name, kind, title, nil)
	}

	decisions := p.AvailableDecisions
	if len(decisions) == 0 {
		decisions = defaultDecisions
	}
	perm := &permission{rpcID: m.ID, decision: map[string]json.RawMessage{}, item: st}
	var opts []protocol.PermissionOption
	for _, d := range decisions {
		key := decisionKey(d)
		o, known := decisionOptions[key]
		if !known {
			a.log.Info("codex offers an approval decision agentd does not know; leaving it out", "decision", string(d))
			continue
		}
		if _, dup := perm.decision[key]; dup {
			continue
		}
		perm.decision[key] = d
		opts = append(opts, protocol.PermissionOption{ID: key, Name: o.name, Kind: o.kind})
		if key == "cancel" || (key == "decline" && perm.cancel == nil) {
			perm.cancel = d
		}
	}
	if perm.cancel == nil {
		perm.cancel = json.RawMessage(`"cancel"`)
	}
	a.perms[id] = perm
	a.emit(protocol.Event{Type: protocol.EventPermissionRequested, ID: id, ToolCallID: st.id, Title: title, Input: rawJSON(input), Options: opts})
}

// decisionKey names a decision: a string decision is its own name, an
// object decision ({"acceptWithExecpolicyAmendment": {...}}) its only key.
func decisionKey(d json.RawMessage) string {
	var s string
	if json.Unmarshal(d, &s) == nil {
		return s
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(d, &obj) == nil && len(obj) == 1 {
		for k := range obj {
			return k
		}
	}
	return ""
}

// answer maps a permission_response command to the approval's answer.
func (a *adapter) answer(c protocol.Command) {
	p, ok := a.perms[c.RequestID]
	if !ok {
		// The app-server withdrew the request (serverRequest/resolved)
		// as the answer was handed over, or an abort or the turn's end
		// ended it: the transcript shows it ended, and says the answer
		// did nothing, as for every answer not applied.
		a.log.Warn("permission answer for no pending request; not applied", "id", c.ID, "requestId", c.RequestID)
		a.emit(notapplied.Notice(c, notapplied.Ended))
		return
	}
	delete(a.perms, c.RequestID)
	d, known := p.decision[c.OptionID]
	if c.Outcome == protocol.OutcomeCancelled || !known {
		if c.Outcome != protocol.OutcomeCancelled {
			a.log.Warn("permission_response names an unknown option; cancelling", "requestId", c.RequestID, "optionId", c.OptionID)
		}
		p.item.dismissed = true
		a.resolve(p, p.cancel, protocol.Event{Type: protocol.EventPermissionResolved, ID: c.RequestID, Outcome: protocol.OutcomeCancelled})
		return
	}
	a.resolve(p, d, protocol.Event{Type: protocol.EventPermissionResolved, ID: c.RequestID, Outcome: protocol.OutcomeSelected, OptionID: c.OptionID})
}

func (a *adapter) resolve(p *permission, decision json.RawMessage, ev protocol.Event) {
	a.send(outgoing{ID: p.rpcID, Result: map[string]any{"decision": decision}})
	a.emit(ev)
}

// cancelPermissions answers every pending approval as dismissed (abort,
// turn end).
func (a *adapter) cancelPermissions() {
	for _, id := range sortedKeys(a.perms) {
		p := a.perms[id]
		delete(a.perms, id)
		p.item.dismissed = true
		a.resolve(p, p.cancel, protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeCancelled})
	}
}

// resolvedElsewhere handles serverRequest/resolved for a request agentd
// did not answer (the app-server withdrew it, e.g. on interrupt).
func (a *adapter) resolvedElsewhere(rpcID json.RawMessage) {
	for _, id := range sortedKeys(a.perms) {
		if p := a.perms[id]; bytes.Equal(p.rpcID, rpcID) {
			p.item.dismissed = true
			delete(a.perms, id)
			a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeCancelled})
		}
	}
}

// sortedKeys keeps the order of events deterministic (ids end in an
// increasing number, so order by length, then text).
func sortedKeys(m map[string]*permission) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && less(keys[j], keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func less(x, y string) bool {
	if len(x) != len(y) {
		return len(x) < len(y)
	}
	return x < y
}
