package protocol

// Size limits enforced by the decoders. They are part of the contract: a
// sandbox or client that stays within them is never refused for size.
const (
	// MaxIDLen is the longest session, block, tool call or request id.
	MaxIDLen = 128
	// MaxTextLen is the longest single text field (a delta, a prompt, a
	// final text, tool output) in bytes.
	MaxTextLen = 256 << 10
	// MaxEventBytes is the largest single encoded event.
	MaxEventBytes = 512 << 10
	// MaxBatchEvents is the most events one POST may carry.
	MaxBatchEvents = 1000
	// MaxBodyBytes is the default largest request body the server reads.
	MaxBodyBytes = 1 << 20
	// MaxPlanEntries and MaxPermissionOptions bound list fields.
	MaxPlanEntries       = 500
	MaxPermissionOptions = 32
)
