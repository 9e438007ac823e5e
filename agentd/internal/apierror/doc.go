// Package apierror turns the server's HTTP responses back into wire error
// codes (protocol.Code), so the command stream and the uploader decide what
// to retry by code, never by message text. It imports protocol only.
package apierror
