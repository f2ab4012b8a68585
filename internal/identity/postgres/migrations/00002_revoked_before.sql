-- +goose Up
-- Access tokens of the user issued at or before this time (to the second) are refused: set by suspension,
-- deletion, a role or password change and logout (see identity.User.RevokedBefore). NULL: none.
ALTER TABLE users ADD COLUMN revoked_before timestamptz;

-- +goose Down
ALTER TABLE users DROP COLUMN revoked_before;
