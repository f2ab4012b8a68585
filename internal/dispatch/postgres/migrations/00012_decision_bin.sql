-- +goose Up
-- A decision's binary form (sqlstore's decisionbin.go), about a third of its JSON document's size and
-- two fifths after lz4 (3.0 kB per 20-candidate decision instead of 4.4 kB, TOAST and index included):
-- decisions are most of the database (one per offer; a task's newest 20 kept for good). A row the store
-- writes now holds it in bin and JSON's null in doc; the rows written before keep their document in doc
-- (bin NULL) and read as before. Adding the column rewrites nothing.
ALTER TABLE decisions ADD COLUMN bin bytea;
ALTER TABLE decisions ALTER COLUMN bin SET COMPRESSION lz4;

-- +goose Down
-- The decisions kept in binary form have no document to go back to: they are deleted.
DELETE FROM decisions WHERE bin IS NOT NULL;
ALTER TABLE decisions DROP COLUMN bin;
