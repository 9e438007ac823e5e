package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// Ways FuzzRecover damages the outbox it wrote, as a crash, a power loss
// or a bad disk leaves it.
const (
	cutAt     = iota // truncated at a byte (a write cut short)
	flipAt           // one byte changed (the medium)
	junkAt           // bytes overwritten from the position on
	junkAfter        // bytes appended to the last segment (blocks of another file)
	zerosAt          // cut, then zeros to a longer size (ext4 after a power loss: the size was, the data was not)
	ackedOnly        // segments intact; only the acknowledged position differs
	damageWays
)

// frame is one record as FuzzRecover wrote it: where it lies in the
// concatenated segments (the log offsets Record.End counts in).
type frame struct {
	seq        int64
	data       []byte
	start, end int64
}

// FuzzRecover writes an outbox of a few records (some larger than Next's
// read chunk; segments small, so that there are several), acknowledges a
// prefix, damages it in one way at an arbitrary byte (or says another
// acknowledged position), reopens it and checks what comes back: Open
// succeeds; every unacknowledged record wholly before the damage comes
// back, in order, intact; nothing comes back that was not written, or
// damaged (only bytes the damage itself wrote can make a frame the writer
// never wrote, which a checksum cannot tell); and the recovered log takes
// new records and returns them, after reopening too.
func FuzzRecover(f *testing.F) {
	f.Add([]byte{10, 20, 30, 40, 50}, uint8(0), uint16(100), uint8(cutAt), uint32(70), []byte{}, uint8(0))
	f.Add([]byte{10, 20, 30, 40, 50}, uint8(2), uint16(0), uint8(flipAt), uint32(130), []byte{0x01}, uint8(0))
	f.Add([]byte{200, 255, 3}, uint8(1), uint16(500), uint8(zerosAt), uint32(1000), []byte{0, 0, 0, 0}, uint8(0))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(3), uint16(40), uint8(junkAt), uint32(333), []byte("garbage"), uint8(0))
	f.Add([]byte{9, 9, 9}, uint8(0), uint16(0), uint8(junkAfter), uint32(0), []byte{16, 0, 0, 0}, uint8(0))
	f.Add([]byte{5, 5, 5, 5}, uint8(2), uint16(0), uint8(ackedOnly), uint32(0), []byte{}, uint8(2))
	// "acked" older than the data (a power loss took its last rewrite),
	// and newer (the data's unsynced tail was lost, the rewrite was not).
	f.Add([]byte{5, 5, 5, 5}, uint8(3), uint16(0), uint8(ackedOnly), uint32(0), []byte{}, uint8(1))
	f.Add([]byte{5, 5, 5, 5}, uint8(3), uint16(0), uint8(cutAt), uint32(0), []byte{}, uint8(10))
	f.Fuzz(func(t *testing.T, sizes []byte, acks uint8, segBytes uint16, way uint8, at uint32, junk []byte, ackedFile uint8) {
		if len(sizes) > 24 {
			sizes = sizes[:24]
		}
		if len(junk) > 4096 {
			junk = junk[:4096]
		}
		dir := t.TempDir()
		l, err := Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if l != nil {
				l.Close()
			}
		}()
		// Small segments, so that the damage can fall in any of several.
		l.segBytes = 64 + int64(segBytes%2048)
		big := 0
		for i, s := range sizes {
			n := int(s)
			if s == 255 && big < 2 { // more would fill the log, and Append wait for an Ack
				n = readChunk + 1000 // read by Next on its own
				big++
			}
			ev := protocol.Event{Type: protocol.EventTextDelta, ID: "m" + strconv.Itoa(i), Delta: strings.Repeat(string(rune('a'+i%26)), n)}
			if err := l.Append(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		written := drainRecover(t, l, 7, 3000)
		if len(written) != len(sizes) {
			t.Fatalf("wrote %d records, Next returned %d", len(sizes), len(written))
		}
		var acked int64 // highest agentSeq acknowledged
		if k := int(acks) % (len(written) + 1); k > 0 {
			if err := l.Ack(written[k-1]); err != nil {
				t.Fatal(err)
			}
			acked = written[k-1].Seq
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}

		// Where each record lies, read back independently of the outbox.
		segs := segments(t, dir)
		frames, total := layout(t, segs)
		byData := map[int64][]byte{}
		for _, r := range written {
			byData[r.Seq] = r.Data
		}
		for _, fr := range frames {
			if want, ok := byData[fr.seq]; !ok || !bytes.Equal(want, fr.data) {
				t.Fatalf("the segments hold agentSeq %d that Next did not return as written", fr.seq)
			}
		}

		// The damage: from log offset p on, anything may be lost.
		way %= damageWays
		p := total
		if total > 0 && way != junkAfter && way != ackedOnly {
			p = int64(at) % total
		}
		si, off := locate(segs, p)
		switch way {
		case cutAt:
			if si >= 0 {
				truncateFile(t, segs[si].name, off)
			}
		case flipAt:
			if si >= 0 {
				b := read(t, segs[si].name)
				x := byte(1)
				if len(junk) > 0 && junk[0] != 0 {
					x = junk[0]
				}
				b[off] ^= x
				write(t, segs[si].name, b)
			}
		case junkAt:
			if si >= 0 {
				b := read(t, segs[si].name)
				b = append(b[:off], junk...)
				write(t, segs[si].name, b)
			}
		case junkAfter:
			if len(segs) > 0 {
				last := segs[len(segs)-1].name
				write(t, last, append(read(t, last), junk...))
			}
		case zerosAt:
			if si >= 0 {
				truncateFile(t, segs[si].name, off)
				truncateFile(t, segs[si].name, off+1+int64(len(junk)))
			}
		}
		// Only the damage's own bytes may form a frame the writer never
		// wrote: a CRC-32C cannot tell a frame written by the junk.
		madeUp := way == junkAt || way == junkAfter
		// The acknowledged position another write (or none) left.
		if ackedFile > 0 {
			acked = int64(ackedFile) - 1
			write(t, filepath.Join(dir, "acked"), fmt.Appendf(nil, "%020d\n", acked))
		}

		l, err = Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			t.Fatalf("Open after damage %d at %d: %v", way, p, err)
		}
		pending := l.Pending()
		got := drainRecover(t, l, 1+int(at%5), 1+int(at%4000))
		if int64(len(got)) != pending {
			t.Fatalf("Pending = %d, Next returned %d records", pending, len(got))
		}
		i := 0 // next frame that may come back
		for _, r := range got {
			for i < len(frames) && frames[i].seq < r.Seq {
				fr := frames[i]
				if fr.end <= p && fr.seq > acked {
					t.Fatalf("agentSeq %d, written before the damage at %d (frame %d..%d), did not come back; got %v", fr.seq, p, fr.start, fr.end, seqs(got))
				}
				i++
			}
			if i < len(frames) && frames[i].seq == r.Seq && bytes.Equal(frames[i].data, r.Data) {
				if r.Seq <= acked {
					t.Fatalf("agentSeq %d came back, acknowledged up to %d", r.Seq, acked)
				}
				i++
				continue
			}
			if !madeUp || r.End() <= p {
				t.Fatalf("record agentSeq %d (%d bytes, ending at %d) came back that was not written so; damage %d at %d; written %v", r.Seq, len(r.Data), r.End(), way, p, frames)
			}
		}
		for ; i < len(frames); i++ {
			if fr := frames[i]; fr.end <= p && fr.seq > acked {
				t.Fatalf("agentSeq %d, written before the damage at %d, did not come back; got %v", fr.seq, p, seqs(got))
			}
		}
		for j := 1; j < len(got); j++ {
			if got[j].Seq <= got[j-1].Seq {
				t.Fatalf("records came back out of order: %v", seqs(got))
			}
		}

		// The recovered log goes on: new records after every agentSeq
		// used, kept across a reopen, and acknowledged for good.
		highest := acked
		for _, r := range written {
			highest = max(highest, r.Seq)
		}
		for _, r := range got {
			highest = max(highest, r.Seq)
		}
		appendN(t, l, 2, "after")
		more := drainRecover(t, l, 10, 1<<20)
		if len(more) != 2 || more[0].Seq <= highest || more[1].Seq != more[0].Seq+1 {
			t.Fatalf("after recovery, appended agentSeqs %v; want two after %d", seqs(more), highest)
		}
		checkPayload(t, more)
		l.Close()
		l, err = Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		again := drainRecover(t, l, 100, 1<<20)
		if want := append(slices.Clone(got), more...); !sameRecords(again, want) {
			t.Fatalf("second Open returned %v, want %v", seqs(again), seqs(want))
		}
		if err := l.Ack(again[len(again)-1]); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l, err = Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			t.Fatalf("third Open: %v", err)
		}
		if rest := drainRecover(t, l, 100, 1<<20); len(rest) != 0 || l.Pending() != 0 {
			t.Fatalf("after acknowledging everything, a reopened log returns %v (Pending %d)", seqs(rest), l.Pending())
		}
	})
}

// FuzzOpenAnyFiles writes arbitrary bytes as the outbox's segments and
// its acknowledged position and opens it: Open never panics or hangs; if
// it succeeds, what it returns is in agentSeq order, and it takes new
// records after all of them, also after a reopen.
func FuzzOpenAnyFiles(f *testing.F) {
	valid := func(seqs ...int64) []byte {
		var b []byte
		for _, s := range seqs {
			b = appendFrame(b, s, fmt.Appendf(nil, `{"type":"heartbeat","agentSeq":%d}`, s))
		}
		return b
	}
	f.Add(valid(1, 2, 3), []byte{}, []byte("0\n"))
	f.Add(valid(1, 2), valid(3, 4), []byte("00000000000000000001\n"))
	f.Add(valid(5, 3), []byte{0, 0, 0}, []byte("x"))
	f.Add(append(valid(1), make([]byte, 40)...), valid(2), []byte(""))
	f.Fuzz(func(t *testing.T, seg1, seg2, ackedFile []byte) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), seg1)
		if len(seg2) > 0 {
			write(t, filepath.Join(dir, fmt.Sprintf("%020d.seg", 2)), seg2)
		}
		write(t, filepath.Join(dir, "acked"), ackedFile)
		l, err := Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("Open failed without saying why")
			}
			return
		}
		defer func() {
			if l != nil {
				l.Close()
			}
		}()
		got := drainRecover(t, l, 3, 100)
		if int64(len(got)) != l.Pending() {
			t.Fatalf("Pending = %d, Next returned %d records", l.Pending(), len(got))
		}
		for j := 1; j < len(got); j++ {
			if got[j].Seq <= got[j-1].Seq {
				t.Fatalf("records came back out of order: %v", seqs(got))
			}
		}
		appendN(t, l, 1, "after")
		more := drainRecover(t, l, 10, 1<<20)
		if len(more) != 1 || (len(got) > 0 && more[0].Seq <= got[len(got)-1].Seq) || more[0].Seq < 1 {
			t.Fatalf("after recovering %v, appended %v", seqs(got), seqs(more))
		}
		checkPayload(t, more)
		l.Close()
		l, err = Open(Options{Dir: dir, MaxBytes: MinMaxBytes})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		if want, again := slices.Concat(got, more), drainRecover(t, l, 100, 1<<20); !sameRecords(again, want) {
			t.Fatalf("second Open returned %v, want %v", seqs(again), seqs(want))
		}
	})
}

// appendFrame appends one frame as the outbox writes it.
func appendFrame(b []byte, seq int64, payload []byte) []byte {
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(hdr[8:16], uint64(seq))
	binary.LittleEndian.PutUint32(hdr[4:8], checksum(hdr[8:16], payload))
	return append(append(b, hdr[:]...), payload...)
}

// drainRecover is drain with Next's limits chosen by the caller.
func drainRecover(t *testing.T, l *Log, batch, maxBytes int) []Record {
	t.Helper()
	var all []Record
	for {
		recs, err := l.Next(batch, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

func sameRecords(a, b []Record) bool {
	return slices.EqualFunc(a, b, func(x, y Record) bool { return x.Seq == y.Seq && bytes.Equal(x.Data, y.Data) })
}

// checkPayload: each record's JSON carries its agentSeq.
func checkPayload(t *testing.T, recs []Record) {
	t.Helper()
	for _, r := range recs {
		var ev protocol.Event
		if err := ev.UnmarshalJSON(r.Data); err != nil || ev.AgentSeq != r.Seq {
			t.Fatalf("record %d: payload %s does not carry its agentSeq (%v)", r.Seq, r.Data, err)
		}
	}
}

type segFile struct {
	name string
	size int64
}

func segments(t *testing.T, dir string) []segFile {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	var segs []segFile
	for _, n := range names {
		segs = append(segs, segFile{n, size(t, n)})
	}
	return segs
}

// layout parses the segments as written (no damage yet), with log offsets
// counted from the first segment, as Open counts them.
func layout(t *testing.T, segs []segFile) ([]frame, int64) {
	t.Helper()
	var frames []frame
	var base int64
	for _, s := range segs {
		b := read(t, s.name)
		for off := 0; off < len(b); {
			if len(b)-off < headerLen {
				t.Fatalf("%s: a partial header at %d", s.name, off)
			}
			n := int(binary.LittleEndian.Uint32(b[off:]))
			seq := int64(binary.LittleEndian.Uint64(b[off+8:]))
			frames = append(frames, frame{seq: seq, data: b[off+headerLen : off+headerLen+n], start: base + int64(off), end: base + int64(off+headerLen+n)})
			off += headerLen + n
		}
		base += s.size
	}
	return frames, base
}

// locate finds the segment holding log offset p and the offset in it; -1
// when there is none.
func locate(segs []segFile, p int64) (int, int64) {
	for i, s := range segs {
		if p < s.size {
			return i, p
		}
		p -= s.size
	}
	return -1, 0
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, name string, n int64) {
	t.Helper()
	if err := os.Truncate(name, n); err != nil {
		t.Fatal(err)
	}
}
