// Package fakemodel holds scripted model APIs on loopback for the tests
// that run real agent CLIs offline: an Anthropic Messages API (Claude Code,
// claude-agent-acp, opencode), an OpenAI Responses API (Codex, codex-acp)
// and a Gemini API (Gemini CLI).
package fakemodel
