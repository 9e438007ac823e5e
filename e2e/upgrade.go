package e2e

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// UpgradeManifest is what cmd/rein-upgrade-fixture was told by the older
// build it drove, kept in the fixture as manifest.json for TestUpgrade.
type UpgradeManifest struct {
	Commit        string // the build that wrote the database
	Backend       string // sqlite or postgres
	SchemaVersion int64  `json:",omitempty"` // SQLite's, as the build left it
	Killed        bool   // stopped by kill -9, not SIGTERM
	StagedRows    int64  `json:",omitempty"` // staged events left unmaterialised (SQLite)
	// NoTurnDigests: the build recorded no turn digests, so the turns
	// it ended have none recorded.
	NoTurnDigests bool `json:",omitempty"`
	// NoCommandAcks: the build kept no acknowledged command.
	NoCommandAcks bool `json:",omitempty"`
	ClientToken   string
	Sessions      []*UpgradeSession // every session that exists at the stop
	Deleted       []UpgradeDeleted  // sessions deleted and not created again
}

// UpgradeSession is one session the fixture holds.
type UpgradeSession struct {
	ID    string
	Token string // its sandbox token
	// OldTokens are tokens the session had before a rotation, or that
	// its id's deleted session had: refused.
	OldTokens []string `json:",omitempty"`
	// OldCreatedAt is the createdAt of the session deleted before this
	// one was created under its id (0: none).
	OldCreatedAt int64 `json:",omitempty"`
	// Instances is each sandbox instance's highest agentSeq stored.
	Instances map[string]int64
	// CurrentInstance is the instance that last opened the command
	// stream.
	CurrentInstance string `json:",omitempty"`
	// Keys are the Idempotency-Keys the build honoured (none before it
	// knew them).
	Keys []UpgradeKey `json:",omitempty"`
	// PendingPermission is the id of a permission request still waiting.
	PendingPermission string `json:",omitempty"`
	// Posters is, for single events posted until a kill, each poster
	// instance's highest acknowledged agentSeq (its events are text
	// deltas "<instance>-<agentSeq> ", agentSeq counting from 1).
	Posters map[string]int64 `json:",omitempty"`
	// Record and Artifacts are the build's last answers to GET
	// /sessions/:id and GET /sessions/:id/artifacts (none for a session
	// written to until the kill).
	Record    json.RawMessage `json:",omitempty"`
	Artifacts json.RawMessage `json:",omitempty"`
}

// UpgradeKey is a command stored with an Idempotency-Key.
type UpgradeKey struct {
	Key     string
	ID      int64
	Command json.RawMessage // as sent, without queue
}

// UpgradeDeleted is a deleted session and the sandbox token it had.
type UpgradeDeleted struct {
	ID    string
	Token string
}

// ExtractUpgradeFixture unpacks a fixture (.tar.gz) into dir and returns
// its manifest.
func ExtractUpgradeFixture(path, dir string) (UpgradeManifest, error) {
	var m UpgradeManifest
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return m, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			return m, err
		}
		if h.Name != filepath.Base(h.Name) {
			return m, fmt.Errorf("%s: a path in the fixture", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return m, err
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name), b, 0o600); err != nil {
			return m, err
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}
