package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/server/store"
	"github.com/rein-ai/rein/server/store/storetest"
)

// The SQLite store passes the store contract, on a file and in memory.
func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return openFile(t, filepath.Join(t.TempDir(), "rein.db")) })
	})
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return openFile(t, Memory) })
	})
}
