package protocol

// SanitizeEventID maps an agent's own id (a tool call id, a message id, an
// item id) into the event id charset, replacing every other byte with '_',
// and cuts it to max bytes (at most MaxIDLen) so an adapter can prefix it,
// for example with its turn. An empty id becomes "_". Adapters use it so
// whatever an agent calls things, the events they post validate.
func SanitizeEventID(s string, max int) string {
	max = min(max, MaxIDLen)
	b := []byte(s)
	for i, c := range b {
		if !eventIDByte(c) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b[:min(len(b), max)])
}

func eventIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':'
}
