package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/server/internal/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "rein.db")
		return func(t *testing.T) storetest.Store {
			s, err := Open(context.Background(), path)
			if err != nil {
				t.Fatalf("Open(%s): %v", path, err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	})
}
