// Package claude drives Claude Code (`claude -p` in stream-json mode) over
// its stdio and translates between its messages and Rein: prompt commands
// become `user` lines, abort an `interrupt` control request,
// permission_response the answer to a `can_use_tool` control request; the
// CLI's stream_event, assistant, user (tool results) and result messages
// become ReinEvents. It imports protocol only.
package claude
