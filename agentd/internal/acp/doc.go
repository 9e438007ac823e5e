// Package acp drives an Agent Client Protocol agent over its stdio with
// github.com/coder/acp-go-sdk and translates between ACP and Rein: prompt,
// abort and permission_response commands become session/prompt,
// session/cancel and answers to session/request_permission; session/update
// notifications become ReinEvents. It imports protocol and acp-go-sdk.
package acp
