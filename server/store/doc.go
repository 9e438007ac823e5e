// Package store is the storage contract of rein-server: the Store
// interface every backend implements, the data it reads and writes, and
// the write operations (Op) one group commit carries.
//
// One writer goroutine per server process groups its requests into one
// Commit. SQLite (server/internal/sqlite) has one process per database;
// PostgreSQL (server/internal/postgres) is shared by any number of
// replicas, which check what they read with Expect and hear of each
// other's commits through the Shared interface. Package
// storetest is the conformance suite every backend must pass:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openMyStore(t) })
//	}
//
// The contract deliberately says nothing about how many processes share
// the database. Rules that hold only when one process owns it (at start no
// sandbox is connected to any session, so live sessions are disconnected)
// are opt-in through the Exclusive interface, which a shared backend does
// not implement.
//
// It imports protocol only, so a backend in another module can depend on it
// without the server.
package store
