package protocol

// CommandType names a command.
type CommandType string

// Command types. Shutdown is never sent by clients: agentd writes it to the
// local agent's stdin when it is stopping.
const (
	CommandPrompt             CommandType = "prompt"
	CommandAbort              CommandType = "abort"
	CommandPermissionResponse CommandType = "permission_response"
	CommandShutdown           CommandType = "shutdown"
)

// Command is an instruction from a client to the agent in a sandbox. ID is
// assigned by the server, strictly increasing per session; it is zero (and
// omitted) in what a client sends.
type Command struct {
	ID        int64       `json:"id,omitempty"`
	Type      CommandType `json:"type"`
	Text      string      `json:"text,omitempty"`
	RequestID string      `json:"requestId,omitempty"`
	OptionID  string      `json:"optionId,omitempty"`
	Outcome   Outcome     `json:"outcome,omitempty"`
	// RequestSeq, on a permission_response, is the seq of the permission
	// artifact the answer is to, as the client saw it (Approval.Seq in
	// the inbox). Agents name a later request with an id used before
	// once the earlier one is resolved (a restarted agent counts from
	// the start), so the id alone may name a request the user never saw:
	// with RequestSeq the server refuses (409 conflict) an answer whose
	// request waiting under RequestID is another one. 0 (absent) leaves
	// the answer to whichever request waits under the id; the server
	// then stores and streams it with that request's seq.
	RequestSeq int64 `json:"requestSeq,omitempty"`
	// RequestInstance and RequestAgentSeq, on a permission_response the
	// server stores and streams to the sandbox, name the event that asked
	// the request the server checked the answer against: the Rein-Instance
	// it was posted with and its agentSeq. The server knows the requests it
	// has stored; agentd may hold newer ones in its outbox, not yet
	// posted, one of them under the same id (the agent resolved the
	// request answered and asked again). agentd hands the answer to the
	// agent only while the request asked by that event waits, so an
	// answer never decides a request its sender did not see. The server
	// sets them (a client's are ignored); they are absent when the event
	// carried no agentSeq, and from a server before them, and an answer
	// without them goes to whichever request waits under the id.
	RequestInstance string `json:"requestInstance,omitempty"`
	RequestAgentSeq int64  `json:"requestAgentSeq,omitempty"`
	// Queue, on a prompt a client sends, asks the server to accept it
	// while no sandbox is connected (instead of 409 no_sandbox): it is
	// stored and delivered when a sandbox connects. The server does not
	// keep it in the command it stores and streams.
	Queue bool `json:"queue,omitempty"`
}

// CommandAccepted is the 202 body of POST /sessions/:id/commands.
type CommandAccepted struct {
	ID int64 `json:"id"`
}
