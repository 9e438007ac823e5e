package fakeserver

import (
	"fmt"

	"github.com/rein-ai/rein/protocol"
)

// TurnsEndInOrder checks that every turn in evs ends before the next one
// starts and that none is left open: the session was idle after each turn.
func TurnsEndInOrder(evs []protocol.Event) error {
	open := ""
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventTurnStarted:
			if open != "" {
				return fmt.Errorf("%s started while %s was open", ev.TurnID, open)
			}
			open = ev.TurnID
		case protocol.EventTurnCompleted:
			if ev.TurnID != open {
				return fmt.Errorf("%s completed while %q was open", ev.TurnID, open)
			}
			open = ""
		}
	}
	if open != "" {
		return fmt.Errorf("%s never ended", open)
	}
	return nil
}

// TurnEvents returns the events of evs from turn's turn_started to its
// turn_completed, both included (turns run one at a time, so every event
// between them is the turn's).
func TurnEvents(evs []protocol.Event, turn string) []protocol.Event {
	var out []protocol.Event
	in := false
	for _, ev := range evs {
		if ev.Type == protocol.EventTurnStarted && ev.TurnID == turn {
			in = true
		}
		if in {
			out = append(out, ev)
		}
		if ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn {
			break
		}
	}
	return out
}
