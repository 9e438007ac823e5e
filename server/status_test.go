package server

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// Every status rule, for every status a session can be in.
func TestNextStatus(t *testing.T) {
	t.Parallel()
	const (
		boot = protocol.StatusBootstrapping
		live = protocol.StatusLive
		idle = protocol.StatusIdle
		disc = protocol.StatusDisconnected
	)
	tests := []struct {
		name    string
		cur     protocol.SessionStatus
		h       happening
		implied protocol.SessionStatus
		held    bool
		stored  bool
		want    protocol.SessionStatus
		remove  bool
	}{
		{"created", "", created, "", false, false, boot, false},

		{"stream opens on a new session", boot, streamOpened, "", true, false, live, false},
		{"stream opens on a disconnected session", disc, streamOpened, "", true, false, live, false},
		{"stream opens on an idle session (takeover)", idle, streamOpened, "", true, false, live, false},
		{"stream opens on a live session (takeover)", live, streamOpened, "", true, false, live, false},

		{"new instance takes over a live session", live, takenOver, "", true, false, live, false},
		{"new instance takes over an idle session", idle, takenOver, "", true, false, live, false},
		{"new instance takes over a disconnected session", disc, takenOver, "", true, false, live, false},
		{"new instance takes over a bootstrapping session", boot, takenOver, "", true, false, live, false},
		{"server's interrupted turn_completed on a held stream makes idle", live, activity, idle, true, false, idle, false},
		{"server's interrupted turn_completed on a disconnected session keeps it disconnected", disc, activity, idle, false, false, disc, false},

		{"turn_completed makes idle", live, activity, idle, true, false, idle, false},
		{"turn_started makes live", idle, activity, live, true, false, live, false},
		{"agent_started without a turn makes idle", live, activity, idle, true, false, idle, false},
		{"events implying nothing keep live", live, activity, "", true, false, live, false},
		{"events implying nothing keep idle", idle, activity, "", true, false, idle, false},
		{"heartbeat keeps idle", idle, activity, "", true, false, idle, false},
		{"events before the stream connects keep bootstrapping", boot, activity, idle, false, false, boot, false},
		{"events on a held stream set the implied status", boot, activity, idle, true, false, idle, false},
		{"events implying nothing keep bootstrapping", boot, activity, "", false, false, boot, false},
		{"held stream that missed its heartbeat is live on activity", disc, activity, "", true, false, live, false},
		{"held stream that missed its heartbeat takes the implied status", disc, activity, idle, true, false, idle, false},
		{"late events of a gone sandbox do not revive", disc, activity, live, false, false, disc, false},
		{"late heartbeat of a gone sandbox does not revive", disc, activity, "", false, false, disc, false},

		{"stream closes on live", live, streamClosed, "", false, false, disc, false},
		{"stream closes on idle", idle, streamClosed, "", false, false, disc, false},
		{"stream closes on bootstrapping", boot, streamClosed, "", false, false, boot, false},
		{"stream closes on disconnected", disc, streamClosed, "", false, false, disc, false},

		{"heartbeat missed on live (or server start)", live, heartbeatMissed, "", false, false, disc, false},
		{"heartbeat missed on idle (or server start)", idle, heartbeatMissed, "", false, false, disc, false},
		{"heartbeat missed on bootstrapping", boot, heartbeatMissed, "", false, false, boot, false},
		{"heartbeat missed on disconnected", disc, heartbeatMissed, "", false, false, disc, false},

		{"bootstrap timeout removes", boot, bootstrapExpired, "", false, false, boot, true},
		{"bootstrap timeout keeps a session with stored events, disconnected", boot, bootstrapExpired, "", false, true, disc, false},
		{"bootstrap timeout spares live", live, bootstrapExpired, "", false, false, live, false},
		{"bootstrap timeout spares disconnected", disc, bootstrapExpired, "", false, false, disc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, remove := nextStatus(tt.cur, tt.h, facts{implied: tt.implied, held: tt.held, stored: tt.stored})
			if got != tt.want || remove != tt.remove {
				t.Errorf("nextStatus(%q, %d, %q, held=%v, stored=%v) = %q, remove=%v; want %q, remove=%v", tt.cur, tt.h, tt.implied, tt.held, tt.stored, got, remove, tt.want, tt.remove)
			}
		})
	}
}
