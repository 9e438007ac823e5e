package reducer

import "slices"

// RecountSize is Size counted from scratch, over every held body, as Size
// did before it kept the held part as the bodies change: the tests hold
// the kept sum to it after every Apply, Release and Restore.
func (s *State) RecountSize() int64 {
	size := stateBytes + int64(len(s.nodes))*seqBytes + int64(len(s.byKey))*keyBytes + s.keyBytes
	var seen []int64
	for _, seq := range s.held {
		n := s.nodes[seq-1]
		if n == nil || slices.Contains(seen, seq) {
			continue
		}
		seen = append(seen, seq)
		size += n.heldBytes()
	}
	return size
}
