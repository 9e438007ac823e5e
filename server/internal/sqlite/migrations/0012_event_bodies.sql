-- Event bodies too big for a leaf of events go into event_bodies, and
-- the events (or staged_events) row keeps '' and the body's id.
--
-- events is a WITHOUT ROWID table, whose leaf keeps at most 1,002 bytes
-- of a row on 4 KiB pages: a bigger row keeps about 490 bytes there and
-- the rest on an overflow page of its own, which holds nothing else. An
-- event of 1 to 4 KB (a line or a few of a tool's output) so took a whole
-- page beside its leaf: a 64 MB output of 1,134-byte events made a log of
-- 286 MB. event_bodies is a rowid table, whose leaf keeps rows of up to
-- 4,061 bytes whole, several to a page, and a bigger one on overflow
-- pages filled to the brim; its rows are appended at the end of its
-- B-tree, as staged_events' are.
--
-- No foreign key: a body is deleted with its session by the Store
-- (DeleteSession), before the cascade removes the rows that name it.
-- Rows stored before this migration keep their bodies where they are:
-- rewriting a big log here would hold the server's start for as long.
CREATE TABLE event_bodies (
    id   INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
ALTER TABLE events ADD COLUMN body_id INTEGER;
ALTER TABLE staged_events ADD COLUMN body_id INTEGER;
