-- CheckWrite inserts a row here and deletes it: a write that needs new
-- pages, to learn whether writes succeed again after a full disk.
CREATE TABLE write_probe (
    id   INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
