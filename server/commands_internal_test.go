package server

import "testing"

// TestResumeAck: what Last-Event-ID acknowledges when a stream opens.
func TestResumeAck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		same         bool
		after, acked int64
		want         int64
	}{
		{"new instance takes its cursor", false, 5, 2, 5},
		{"new instance behind the record lowers it", false, 1, 4, 1},
		{"same instance restarted behind the record lowers it", true, 1, 4, 1},
		{"same instance reconnecting ahead (received, not taken) does not raise it", true, 7, 4, 4},
		{"same instance at the record keeps it", true, 4, 4, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := resumeAck(tt.same, tt.after, tt.acked); got != tt.want {
				t.Errorf("resumeAck(%v, %d, %d) = %d; want %d", tt.same, tt.after, tt.acked, got, tt.want)
			}
		})
	}
}
