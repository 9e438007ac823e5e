package server

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// Every status rule, for every status a session can be in.
func TestNextStatus(t *testing.T) {
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
		want    protocol.SessionStatus
		remove  bool
	}{
		{"created", "", created, "", false, boot, false},

		{"stream opens on a new session", boot, streamOpened, "", true, live, false},
		{"stream opens on a disconnected session", disc, streamOpened, "", true, live, false},
		{"stream opens on an idle session (takeover)", idle, streamOpened, "", true, live, false},
		{"stream opens on a live session (takeover)", live, streamOpened, "", true, live, false},

		{"new instance takes over a live session", live, takenOver, "", true, live, false},
		{"new instance takes over an idle session", idle, takenOver, "", true, live, false},
		{"new instance takes over a disconnected session", disc, takenOver, "", true, live, false},
		{"new instance takes over a bootstrapping session", boot, takenOver, "", true, live, false},
		{"server's interrupted turn_completed on a held stream makes idle", live, activity, idle, true, idle, false},
		{"server's interrupted turn_completed on a disconnected session keeps it disconnected", disc, activity, idle, false, disc, false},

		{"turn_completed makes idle", live, activity, idle, true, idle, false},
		{"turn_started makes live", idle, activity, live, true, live, false},
		{"agent_started without a turn makes idle", live, activity, idle, true, idle, false},
		{"events implying nothing keep live", live, activity, "", true, live, false},
		{"events implying nothing keep idle", idle, activity, "", true, idle, false},
		{"heartbeat keeps idle", idle, activity, "", true, idle, false},
		{"events before the stream connects set the implied status", boot, activity, idle, false, idle, false},
		{"events implying nothing keep bootstrapping", boot, activity, "", false, boot, false},
		{"held stream that missed its heartbeat is live on activity", disc, activity, "", true, live, false},
		{"held stream that missed its heartbeat takes the implied status", disc, activity, idle, true, idle, false},
		{"late events of a gone sandbox do not revive", disc, activity, live, false, disc, false},
		{"late heartbeat of a gone sandbox does not revive", disc, activity, "", false, disc, false},

		{"stream closes on live", live, streamClosed, "", false, disc, false},
		{"stream closes on idle", idle, streamClosed, "", false, disc, false},
		{"stream closes on bootstrapping", boot, streamClosed, "", false, boot, false},
		{"stream closes on disconnected", disc, streamClosed, "", false, disc, false},

		{"heartbeat missed on live (or server start)", live, heartbeatMissed, "", false, disc, false},
		{"heartbeat missed on idle (or server start)", idle, heartbeatMissed, "", false, disc, false},
		{"heartbeat missed on bootstrapping", boot, heartbeatMissed, "", false, boot, false},
		{"heartbeat missed on disconnected", disc, heartbeatMissed, "", false, disc, false},

		{"bootstrap timeout removes", boot, bootstrapExpired, "", false, boot, true},
		{"bootstrap timeout spares live", live, bootstrapExpired, "", false, live, false},
		{"bootstrap timeout spares disconnected", disc, bootstrapExpired, "", false, disc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, remove := nextStatus(tt.cur, tt.h, tt.implied, tt.held)
			if got != tt.want || remove != tt.remove {
				t.Errorf("nextStatus(%q, %d, %q, held=%v) = %q, remove=%v; want %q, remove=%v", tt.cur, tt.h, tt.implied, tt.held, got, remove, tt.want, tt.remove)
			}
		})
	}
}
