package sqlite

import "testing"

func TestBytesString(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 bytes", 1023: "1023 bytes", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3<<30 + 1<<29: "3.5 GiB", 1 << 60: "1024.0 PiB"} {
		if got := bytesString(n); got != want {
			t.Errorf("bytesString(%d) = %q; want %q", n, got, want)
		}
	}
}
