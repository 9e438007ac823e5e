// Package e2e runs Rein as users run it: the real rein-server, agentd and
// agents as separate processes on loopback, driven over HTTP and SSE, with
// faults injected between them (a TCP proxy that pauses and cuts, kill -9,
// restarts on the same database, a full disk, and a power loss:
// internal/crashfs is a FUSE filesystem that keeps, when a test cuts the
// power, only what was fsynced).
//
// It is a black box: it builds the binaries from the other modules and
// talks to them over the network only, with protocol for the wire types
// and the product's own Go client (server/client) for the client API, so
// the suite exercises that client too. What the client does not do on
// purpose stays here: the Follower holds one stream connection at a time
// so a test can drop it and check every event's revision, and the TCP
// proxy injects faults (as do two HTTP proxies: AnswerDropper loses
// answers, HeaderGarbler spoils a header of agentd's event posts). The
// harness (this package's
// non-test files) is shared by the test suite and by cmd/rein-bench.
//
// Several replicas: StartReplicas starts N rein-servers on one PostgreSQL
// database (a pgtest database in the tests) sharing a stream ticket key
// file and the client token; Replicas.NewBalancer puts a round-robin TCP
// Balancer in front of some or all of them (nothing sticky; a refusing,
// killed replica is skipped), Kill is kill -9, Restart starts a replica
// again on a new port and repoints every balancer, and with DBLinks each
// replica reaches PostgreSQL through its own Proxy, to cut one replica off
// its database. replicas_test.go drives them: a turn spread over three
// replicas, kill -9 of the replica holding the sandbox's and then the
// client's stream mid-turn, two agentds on different replicas, a bootstrap
// timeout firing once, every replica restarted, a database link cut.
//
// Parallel tests: a test calls t.Parallel when it has its own server,
// ports, directories and processes and mostly waits (a turn streamed at a
// fixed pace, a partition held): TestReplicasKilledMidTurn alone waits
// 30 s on its turn, which the others fill; make test runs them four at a
// time (the Makefile's E2E_PARALLEL). Tests stay sequential that
// mount a filesystem or fill a disk, restart a server on the same port
// (another test could take the port meanwhile), drive a browser,
// or measure time or memory.
package e2e
