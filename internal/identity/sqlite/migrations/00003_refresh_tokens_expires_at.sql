-- +goose Up
-- Expired refresh tokens are deleted in batches, oldest expiry first (identity.Service.PurgeExpiredSessions).
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- +goose Down
DROP INDEX refresh_tokens_expires_at;
