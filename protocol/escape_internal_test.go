package protocol

import "testing"

// safe8 says a word is safe exactly when each of its bytes is (jsonSafe),
// for every byte value at every place in the word, beside safe bytes and
// beside others.
func TestSafe8IsJSONSafe(t *testing.T) {
	for _, fill := range []byte{'x', ' ', '~', '<', 0x80} {
		for pos := range 8 {
			for b := range 256 {
				w := [8]byte{fill, fill, fill, fill, fill, fill, fill, fill}
				w[pos] = byte(b)
				want := true
				for _, c := range w {
					want = want && c < 0x80 && jsonSafe[c]
				}
				if got := safe8(load8(w[:], 0)); got != want {
					t.Fatalf("safe8(% x) = %v; want %v", w, got, want)
				}
			}
		}
	}
}
