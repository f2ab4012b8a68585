-- +goose Up
-- The documents of tasks and decisions as json, the text exactly as the store wrote it, instead of
-- jsonb: every write parsed jsonb's binary form out of the text (and every read printed it back, in an
-- order and spacing of its own), and the store never queries into a document. json only checks the
-- text, and a read returns the bytes written, which the store's cache of decoded documents (taskDocs,
-- keyed by those bytes) recognizes without decoding them again.
ALTER TABLE tasks ALTER COLUMN doc TYPE json USING doc::json;
ALTER TABLE decisions ALTER COLUMN doc TYPE json USING doc::json;

-- +goose Down
ALTER TABLE decisions ALTER COLUMN doc TYPE jsonb USING doc::jsonb;
ALTER TABLE tasks ALTER COLUMN doc TYPE jsonb USING doc::jsonb;
