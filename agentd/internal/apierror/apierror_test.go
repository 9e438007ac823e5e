package apierror

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// TestFromResponse: what the command stream and the uploader decide from
// an answer. A superseded agentd stops, and so does one whose session was
// deleted and created again (the server's 409 conflict); a bare 409 (a
// proxy's page) is taken for neither; a proxy's 502 with a stray JSON body
// is retried.
func TestFromResponse(t *testing.T) {
	tests := []struct {
		name             string
		status           int
		body             string
		code             protocol.Code
		final, retryable bool
		msg              string
	}{
		{"superseded", 409, `{"code":"superseded","message":"a newer agentd took over"}`, protocol.CodeSuperseded, true, false, "409 superseded: a newer agentd took over"},
		{"bare 409", 409, `<html>conflict</html>`, protocol.CodeConflict, false, false, "409 conflict: Conflict"},
		{"session created again", 409, `{"code":"conflict","message":"session \"s\" was deleted and created again"}`, protocol.CodeConflict, true, false, `409 conflict: session "s" was deleted and created again`},
		{"token refused", 401, `{"code":"unauthorized","message":"bad token"}`, protocol.CodeUnauthorized, true, false, "401 unauthorized: bad token"},
		{"session gone", 404, `{"code":"not_found","message":"session \"s\" not found"}`, protocol.CodeNotFound, true, false, `404 not_found: session "s" not found`},
		{"proxy 502", 502, `{"code":"not_found","message":"upstream"}`, protocol.CodeUnavailable, false, true, "502 unavailable: Bad Gateway"},
		{"batch too large", 413, `{"code":"too_large","message":"big"}`, protocol.CodeTooLarge, false, false, "413 too_large: big"},
		{"unavailable", 503, `{"code":"unavailable","message":"disk full"}`, protocol.CodeUnavailable, false, true, "503 unavailable: disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := FromResponse(&http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))})
			var e *protocol.Error
			if !errors.As(err, &e) || e.Code != tt.code || err.Error() != tt.msg {
				t.Fatalf("FromResponse = %v (%T), want code %q message %q", err, err, tt.code, tt.msg)
			}
			if IsFinal(err) != tt.final || IsRetryable(err) != tt.retryable {
				t.Errorf("IsFinal = %v, IsRetryable = %v; want %v, %v", IsFinal(err), IsRetryable(err), tt.final, tt.retryable)
			}
		})
	}
	if IsFinal(io.ErrUnexpectedEOF) || !IsRetryable(io.ErrUnexpectedEOF) {
		t.Error("a network error must be retryable and not final")
	}
}

// TestStatedRefusal: only a refusal in the server's words is stated; a
// proxy's page with the same status is a refusal all the same, but not
// the server's.
func TestStatedRefusal(t *testing.T) {
	for _, tt := range []struct {
		name             string
		status           int
		body             string
		rejected, stated bool
	}{
		{"server's 413", 413, `{"code":"too_large","message":"event is 600000 bytes"}`, true, true},
		{"proxy's 413", 413, "<html>413 Request Entity Too Large</html>", true, false},
		{"server's 400", 400, `{"code":"invalid","message":"type: required"}`, true, true},
		{"empty 400", 400, "", true, false},
		{"server's 503", 503, `{"code":"unavailable","message":"disk full"}`, false, true},
	} {
		err := FromResponse(&http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))})
		if IsRejected(err) != tt.rejected || IsStated(err) != tt.stated {
			t.Errorf("%s: IsRejected = %v, IsStated = %v; want %v, %v", tt.name, IsRejected(err), IsStated(err), tt.rejected, tt.stated)
		}
	}
	if IsRejected(io.ErrUnexpectedEOF) || IsStated(io.ErrUnexpectedEOF) {
		t.Error("a network error is neither a refusal nor stated")
	}
}

// TestRequestRefused: a refusal of the request itself is one only in the
// server's words, with its scope, and only for the codes that would
// otherwise cost the content; an older server's 400, without the scope,
// refuses the content as before.
func TestRequestRefused(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   bool
	}{
		{"bad header", 400, `{"code":"invalid","message":"Rein-Session-Created header: got \"0\"","scope":"request"}`, true},
		{"request too large", 413, `{"code":"too_large","message":"m","scope":"request"}`, true},
		{"bad event", 400, `{"code":"invalid","message":"events[0].type: required"}`, false},
		{"older server's bad header", 400, `{"code":"invalid","message":"Rein-Session-Created header: got \"0\""}`, false},
		{"proxy's page", 502, `{"code":"invalid","message":"m","scope":"request"}`, false},
		{"final", 404, `{"code":"not_found","message":"m","scope":"request"}`, false},
		{"session created again", 409, `{"code":"conflict","message":"m","scope":"request"}`, false},
		{"unknown scope", 400, `{"code":"invalid","message":"m","scope":"event"}`, false},
	} {
		err := FromResponse(&http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))})
		if got := IsRequestRefused(err); got != tt.want {
			t.Errorf("%s: IsRequestRefused(%v) = %v; want %v", tt.name, err, got, tt.want)
		}
	}
	if IsRequestRefused(io.ErrUnexpectedEOF) {
		t.Error("a network error is no refusal")
	}
}
