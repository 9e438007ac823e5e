package protocol

// Size limits enforced by the decoders. They are part of the contract: a
// sandbox or client that stays within them is never refused for size.
const (
	// MaxIDLen is the longest session, block, tool call or request id.
	MaxIDLen = 128
	// MaxIdempotencyKeyLen is the longest Idempotency-Key, in bytes.
	MaxIdempotencyKeyLen = 255
	// MaxTextLen is the longest single text field (a delta, a prompt, a
	// final text, tool output) in bytes.
	MaxTextLen = 256 << 10
	// MaxEventBytes is the largest single encoded event.
	MaxEventBytes = 512 << 10
	// MaxBatchEvents is the most events one POST may carry.
	MaxBatchEvents = 1000
	// MaxBodyBytes is the default largest request body the server reads.
	MaxBodyBytes = 1 << 20
	// MaxCommandBytes bounds one encoded command, as the command stream
	// and agentd send it: a prompt's text is at most MaxTextLen bytes,
	// but JSON may write each of them as a six-byte escape (a control
	// character; '<', '>' and '&' as Go escapes them), and the rest of a
	// command is ids and a few short fields. A reader with a smaller
	// bound would refuse a command the server accepted, on every
	// reconnection.
	MaxCommandBytes = 6*MaxTextLen + 64<<10
	// MaxValueDepth is how deep a free-form value (input, result,
	// content, capabilities, locations) may nest. An event may nest
	// 10,000 levels (encoding/json's limit), but the server hands a value
	// on inside other documents: the event log page puts it 4 levels
	// deeper ({"events":[{"event":{"input":...}}]}), the inbox, artifact
	// pages and stream payloads 1 to 2. A value nested up to the event's
	// own limit made each of those unreadable for encoding/json (the Go
	// client, so rein inbox for every session); 100 levels are left for
	// such wrappers.
	MaxValueDepth = 9900
	// MaxPlanEntries and MaxPermissionOptions bound list fields.
	MaxPlanEntries       = 500
	MaxPermissionOptions = 32
)
