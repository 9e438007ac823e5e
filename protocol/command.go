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
