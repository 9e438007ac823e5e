// Package postgres is the PostgreSQL adapter of the server's Store:
// embedded migrations, a pgx connection pool, each Commit one transaction
// sent as one pipelined batch (of one statement per kind of row for a
// group's appends and session rows), reads in REPEATABLE READ READ ONLY
// transactions so a snapshot and its revision agree.
//
// It imports protocol and internal/store only. Everything
// PostgreSQL-specific (the DSN, connection settings, SQL dialect) stays in
// here. Durability: every connection runs with synchronous_commit=on, so
// a commit that returned is flushed to the WAL (and, with a synchronous
// standby, to the standby) before the server answers 2xx.
package postgres
