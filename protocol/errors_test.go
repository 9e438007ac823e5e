package protocol_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

func TestCodeOf(t *testing.T) {
	invalid := protocol.Errorf(protocol.CodeInvalid, "bad %s", "thing")
	tests := []struct {
		name string
		err  error
		want protocol.Code
	}{
		{"error", protocol.Errorf(protocol.CodeNotFound, "session %q not found", "x"), protocol.CodeNotFound},
		{"wrapped", fmt.Errorf("append events session=s: %w", invalid), protocol.CodeInvalid},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", protocol.ErrSuperseded)), protocol.CodeSuperseded},
		{"joined", errors.Join(io.EOF, protocol.ErrNoSandbox), protocol.CodeNoSandbox},
		{"first in chain wins", fmt.Errorf("%w: %w", protocol.ErrConflict, protocol.ErrTooLarge), protocol.CodeConflict},
		{"plain error", io.EOF, protocol.CodeInternal},
		{"nil", nil, protocol.CodeInternal},
		{"field error", &protocol.FieldError{Index: 0, Field: "x", Reason: "r"}, protocol.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	notFound := protocol.Errorf(protocol.CodeNotFound, "session %q not found", "x")
	wrapped := fmt.Errorf("get session: %w", notFound)
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"sentinel by code", wrapped, protocol.ErrNotFound, true},
		{"other code", wrapped, protocol.ErrConflict, false},
		{"same code and message", wrapped, &protocol.Error{Code: protocol.CodeNotFound, Message: `session "x" not found`}, true},
		{"same code other message", wrapped, &protocol.Error{Code: protocol.CodeNotFound, Message: "other"}, false},
		{"sentinel is not a specific error", protocol.ErrNotFound, notFound, false},
		{"plain error", io.EOF, protocol.ErrNotFound, false},
		{"not an *Error target", notFound, io.EOF, false},
		{"nil *Error target", notFound, (*protocol.Error)(nil), false},
		{"decode error is invalid", mustFail(protocol.DecodeEvents([]byte(`{}`))), protocol.ErrInvalid, true},
		{"decode error is not too large", mustFail(protocol.DecodeEvents([]byte(`{}`))), protocol.ErrTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, tt.target, got, tt.want)
			}
		})
	}
}

func mustFail(_ any, err error) error {
	if err == nil {
		panic("expected an error")
	}
	return err
}

func TestErrorMessage(t *testing.T) {
	err := protocol.Errorf(protocol.CodeConflict, "session %q exists", "a")
	if err.Error() != `session "a" exists` || err.Code != protocol.CodeConflict {
		t.Errorf("Errorf = %+v", err)
	}
	// The message of a FieldError is the one its unwrapped *Error carries,
	// so an HTTP adapter that writes CodeOf and the *Error's message says
	// the same as err.Error().
	fe := &protocol.FieldError{Index: 3, Field: "entries[0].status", Reason: "required"}
	var e *protocol.Error
	if !errors.As(fe, &e) {
		t.Fatal("FieldError does not unwrap to *Error")
	}
	if want := "events[3].entries[0].status: required"; fe.Error() != want || e.Message != want {
		t.Errorf("Error() = %q, unwrapped message %q, want %q", fe.Error(), e.Message, want)
	}
	for _, tt := range []struct {
		fe   protocol.FieldError
		want string
	}{
		{protocol.FieldError{Index: -1, Field: "text", Reason: "required"}, "text: required"},
		{protocol.FieldError{Index: -1, Reason: "body is not valid UTF-8"}, "body is not valid UTF-8"},
		{protocol.FieldError{Index: 2, Reason: "not a JSON object"}, "events[2]: not a JSON object"},
	} {
		if got := tt.fe.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
