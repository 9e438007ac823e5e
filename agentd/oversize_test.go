package agentd_test

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// TestNativeTextOverTheLimitIsCut: a native agent's line within the line
// limit whose text is over protocol.MaxTextLen (as written, or once each
// invalid UTF-8 byte reads as U+FFFD's three bytes, which can also take
// the event past protocol.MaxEventBytes) is cut to fit, as README.md
// promises for every agent, not refused whole: refused, a turn_completed
// left its turn running in the transcript, and only a notice naming the
// field arrived.
func TestNativeTextOverTheLimitIsCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		// text writes the resultText's JSON string contents to stdout.
		text string
		want string // the cut text's start
	}{
		{"long text", `head -c 300000 /dev/zero | tr '\0' x`, "xxxx"},
		{"invalid UTF-8 over the text limit", `printf 'ok '; head -c 100000 /dev/zero | tr '\0' '\377'`, "ok \uFFFD"},
		{"invalid UTF-8 over the event limit", `printf 'ok '; head -c 180000 /dev/zero | tr '\0' '\377'`, "ok \uFFFD"},
		// Lines over protocol.MaxEventBytes: they were refused whole
		// for their length alone, though the text is what gets cut.
		{"line over the event limit", `head -c 600000 /dev/zero | tr '\0' x`, "xxxx"},
		{"text within the limit escaped over it", `head -c 200000 /dev/zero | tr '\0' x | sed 's/x/\\u0001/g'`, "\x01\x01\x01\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := script(t, `echo '{"type":"agent_started","agent":{"name":"big","protocol":"native"}}'
while IFS= read -r line; do
  case $line in
  *'"type":"prompt"'*)
    echo '{"type":"turn_started","turnId":"t1","source":"user"}'
    printf '{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","resultText":"'
    `+tc.text+`
    printf '"}\n' ;;
  *'"type":"shutdown"'*) exit 0 ;;
  esac
done
`)
			srv := fakeserver.New(t, "s1")
			start(t, srv, agentd.Options{Command: []string{bin}})
			waitStarted(t, srv, 1)
			srv.Prompt("go")
			evs := srv.Wait(t, "the turn's end or a notice", func(evs []protocol.Event) bool {
				return fakeserver.Has(evs, isType(protocol.EventTurnCompleted)) || fakeserver.Has(evs, isType(protocol.EventNotice))
			})
			i := indexOf(evs, protocol.EventTurnCompleted)
			if i == len(evs) {
				t.Fatalf("no turn_completed; notices %q", notices(evs))
			}
			ev := evs[i]
			if ev.TurnID != "t1" || ev.StopReason != protocol.StopEndTurn {
				t.Errorf("turn_completed %q %q, want t1 end_turn", ev.TurnID, ev.StopReason)
			}
			if len(ev.ResultText) > protocol.MaxTextLen || !strings.HasPrefix(ev.ResultText, tc.want) || !strings.Contains(ev.ResultText, "[cut by agentd: ") {
				t.Errorf("resultText of %d bytes, %.20q…%q; want it cut to at most %d bytes, starting %q and marked", len(ev.ResultText), ev.ResultText, ev.ResultText[max(0, len(ev.ResultText)-60):], protocol.MaxTextLen, tc.want)
			}
		})
	}
}

// TestNativeTurnEndOverTheLineCapEndsTheTurn: a native line longer than
// agentd reads (a resultText of 2 MB) is refused, but when it can still
// be seen to be a turn_completed, its turn ends, as an error saying why:
// refused with only a notice, the turn stayed running in the transcript
// for ever, though the agent had ended it.
func TestNativeTurnEndOverTheLineCapEndsTheTurn(t *testing.T) {
	bin := script(t, `echo '{"type":"agent_started","agent":{"name":"big","protocol":"native"}}'
while IFS= read -r line; do
  case $line in
  *'"type":"prompt"'*)
    echo '{"type":"turn_started","turnId":"t1","source":"user"}'
    printf '{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","resultText":"'
    head -c 2000000 /dev/zero | tr '\0' x
    printf '"}\n' ;;
  *'"type":"shutdown"'*) exit 0 ;;
  esac
done
`)
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{Command: []string{bin}})
	waitStarted(t, srv, 1)
	srv.Prompt("go")
	evs := srv.Wait(t, "the turn's end", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, isType(protocol.EventTurnCompleted))
	})
	ev := evs[indexOf(evs, protocol.EventTurnCompleted)]
	if ev.TurnID != "t1" || ev.StopReason != protocol.StopError || !strings.Contains(ev.Error, "longer than") {
		t.Errorf("turn_completed %q %q %q, want t1 error saying the line was too long", ev.TurnID, ev.StopReason, ev.Error)
	}
}
