package codex

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// maxLine bounds one app-server line. A command's aggregated output rides
// in a single item/completed line, so this is generous.
const maxLine = 64 << 20

// message is any JSON-RPC message: a request (ID and Method), a
// notification (Method only) or an answer (ID with Result or Error).
type message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *rpcError       `json:"error,omitempty"`
	// raw is the line as read, for the transcript.
	raw []byte
}

func (m *message) isRequest() bool      { return m.Method != "" && len(m.ID) > 0 }
func (m *message) isNotification() bool { return m.Method != "" && len(m.ID) == 0 }

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

// Standard JSON-RPC codes agentd answers with.
const codeMethodNotFound = -32601

// outgoing is what agentd writes: requests, notifications and answers.
type outgoing struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  any             `json:"params,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// readMessages decodes the app-server's stdout into out until EOF, a read
// error or stop. It closes out when it returns.
func readMessages(r io.Reader, out chan<- *message, stop <-chan struct{}, log *slog.Logger) {
	defer close(out)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, dropped, err := readLine(br)
		if dropped {
			// One message lost (an item then ends with its turn), not
			// the app-server: stopping here would leave it blocked on a
			// full pipe until it was killed, its turn failed.
			log.Warn("codex app-server wrote a line over the limit; dropping it", "limit", maxLine)
		}
		if len(line) > 0 {
			m := &message{}
			if jerr := json.Unmarshal(line, m); jerr != nil {
				log.Warn("codex app-server wrote a line that is not JSON-RPC", "err", jerr, "len", len(line))
			} else {
				m.raw = line
				select {
				case out <- m:
				case <-stop:
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Info("codex app-server stdout ended", "err", err)
			}
			return
		}
	}
}

// readLine reads one line without its newline. A line over maxLine is
// read to its end and discarded (dropped) rather than buffered without
// bound.
func readLine(br *bufio.Reader) (line []byte, dropped bool, err error) {
	for {
		var chunk []byte
		chunk, err = br.ReadSlice('\n')
		if !dropped && len(line)+len(chunk) > maxLine {
			line, dropped = nil, true
		}
		if !dropped {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		return line, dropped, err
	}
}

// idOf formats our own integer request id.
func idOf(n int64) json.RawMessage { return json.RawMessage(strconv.FormatInt(n, 10)) }

// answerID parses the id of an answer to one of our requests.
func answerID(raw json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}
