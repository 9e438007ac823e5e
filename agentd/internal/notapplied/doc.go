// Package notapplied builds the notice agentd posts for a permission
// answer the server accepted (202) that did not take effect in the agent
// (docs/PROTOCOL.md, "permission_answer_not_applied"). The supervisor
// (an answer it does not hand over, or that the agent's run never took)
// and the adapters (an answer whose request the agent withdrew as it was
// handed over, one the agent's input no longer takes) all build it here,
// so the transcript says it the same way whoever drops the answer. It
// imports protocol only.
package notapplied
