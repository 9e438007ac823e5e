package sqlite

import (
	"context"
	"fmt"

	"github.com/rein-ai/rein/server/store"
)

// SandboxTokens returns every session's sandbox token hash (SHA-256 of the
// token) by session id. Sessions created before tokens existed have none.
func (s *Store) SandboxTokens(ctx context.Context) (map[string][32]byte, error) {
	var rows []struct {
		SessionID string `db:"session_id"`
		Hash      []byte `db:"hash"`
	}
	if err := s.r.SelectContext(ctx, &rows, `SELECT session_id, hash FROM sandbox_tokens`); err != nil {
		return nil, fmt.Errorf("load sandbox tokens: %w", err)
	}
	out := make(map[string][32]byte, len(rows))
	for _, r := range rows {
		if len(r.Hash) != 32 {
			return nil, fmt.Errorf("load sandbox tokens: session %s: hash is %d bytes, want 32", r.SessionID, len(r.Hash))
		}
		out[r.SessionID] = [32]byte(r.Hash)
	}
	return out, nil
}

func setSandboxToken(ctx context.Context, ex execer, op store.SetSandboxToken) error {
	_, err := ex.ExecContext(ctx, qSetSandboxToken,
		op.SessionID, op.Hash[:], op.At)
	if err != nil {
		return fmt.Errorf("set sandbox token session=%s: %w", op.SessionID, err)
	}
	return nil
}
