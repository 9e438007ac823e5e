-- The row's write count and the command stream's opening count (see
-- store.Session.Version and StreamEpoch). SQLite has one writer process,
-- so nothing checks them here; they are stored so that the store contract
-- is the same on both backends.
ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN stream_epoch INTEGER NOT NULL DEFAULT 0;
