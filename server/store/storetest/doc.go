// Package storetest is the conformance suite of the store contract: every
// backend of package store must pass it, in the spirit of gocloud.dev's
// drivertest packages. A backend's test calls Run with a function that
// opens a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mybackend.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// It checks what the server relies on: ordering, exact ArtifactsSince,
// appends merged on read, all-or-nothing commits, idempotent instance
// records, cascade deletes, commands and sandbox tokens. What only one
// backend can check (SQLite migrating an old file) stays in that backend's
// own tests.
//
// It imports store, protocol and the standard library (testing).
package storetest
