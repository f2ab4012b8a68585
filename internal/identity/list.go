package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"lastmile/internal/platform/apperr"
)

// streamBatch is how many users StreamUsers reads from the store at a time.
const streamBatch = 500

// ListRequest asks for one page of users.
type ListRequest struct {
	Filter Filter
	// PageSize is 0 (DefaultPageSize) to MaxPageSize.
	PageSize int
	// PageToken is the NextPageToken of the previous page, or empty for the first page.
	PageToken string
}

// Page is one page of users.
type Page struct {
	// Users are ordered by id, which is creation order.
	Users []User
	// NextPageToken continues the listing; empty on the last page.
	NextPageToken string
	// TotalSize is how many users match the filter across all pages, at the time of the call.
	TotalSize int
}

// ListUsers returns one page of the users matching req.Filter, oldest first.
//
// Admins and dispatchers (who look up courier users to register them); only admins may list deleted
// users. Pagination is keyset based on the time-ordered ids, so pages stay free of duplicates and gaps
// while users are created. The page token is opaque to clients; it carries the last id and a hash of the
// filter, so that a token reused with other filters is refused instead of silently skipping users.
//
// Errors: Invalid for a page size out of range, an undefined filter value, or a malformed or foreign
// page token; PermissionDenied for other callers.
func (s *Service) ListUsers(ctx context.Context, req ListRequest) (Page, error) {
	c := callerOf(ctx)
	if !c.isAdmin() && !c.isDispatcher() {
		return Page{}, apperr.Errorf(apperr.PermissionDenied, "only admins and dispatchers may list users")
	}
	if req.Filter.Status == StatusDeleted && !c.isAdmin() {
		return Page{}, apperr.Errorf(apperr.PermissionDenied, "only admins may list deleted users")
	}
	var v violations
	v.filter(req.Filter)
	if req.PageSize < 0 || req.PageSize > MaxPageSize {
		v.add("page_size", "must be between 0 and 1000")
	}
	if err := v.err(); err != nil {
		return Page{}, err
	}
	after, err := decodePageToken(req.PageToken, req.Filter)
	if err != nil {
		return Page{}, err
	}
	size := req.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	// One more than asked tells whether another page follows without a second query.
	users, err := s.store.ListUsers(ctx, req.Filter, after, size+1)
	if err != nil {
		return Page{}, fmt.Errorf("list users: %w", err)
	}
	total, err := s.store.CountUsers(ctx, req.Filter)
	if err != nil {
		return Page{}, fmt.Errorf("count users: %w", err)
	}
	page := Page{Users: users, TotalSize: total}
	if len(users) > size {
		page.Users = users[:size]
		page.NextPageToken = encodePageToken(users[size-1].ID, req.Filter)
	}
	return page, nil
}

// StreamUsers sends every user matching f to send, oldest first, reading the store in batches.
//
// Admins only. It stops at the first error of send and as soon as ctx is done, between batches and
// between users, returning that error.
//
// Errors: Invalid for an undefined filter value; PermissionDenied for other callers; ctx.Err().
func (s *Service) StreamUsers(ctx context.Context, f Filter, send func(User) error) error {
	if !callerOf(ctx).isAdmin() {
		return apperr.Errorf(apperr.PermissionDenied, "only admins may export users")
	}
	var v violations
	v.filter(f)
	if err := v.err(); err != nil {
		return err
	}
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		users, err := s.store.ListUsers(ctx, f, after, streamBatch)
		if err != nil {
			return fmt.Errorf("list users after %q: %w", after, err)
		}
		for _, u := range users {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := send(u); err != nil {
				return err
			}
		}
		if len(users) < streamBatch {
			return nil
		}
		after = users[len(users)-1].ID
	}
}

// pageToken is the decoded form of a page token.
type pageToken struct {
	// After is the id of the last user of the previous page.
	After string `json:"a"`
	// Filter is filterHash of the filter the token was issued for.
	Filter string `json:"f"`
}

func encodePageToken(after string, f Filter) string {
	b, _ := json.Marshal(pageToken{After: after, Filter: filterHash(f)}) // cannot fail for two strings
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the id after which the page starts, "" for the first page.
func decodePageToken(token string, f Filter) (string, error) {
	if token == "" {
		return "", nil
	}
	invalid := apperr.InvalidFields("invalid page_token",
		apperr.FieldViolation{Field: "page_token", Description: "is malformed; use the next_page_token of the previous page"})
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", invalid
	}
	var pt pageToken
	if err := json.Unmarshal(b, &pt); err != nil || !uuidPattern.MatchString(pt.After) {
		return "", invalid
	}
	if pt.Filter != filterHash(f) {
		return "", apperr.InvalidFields("invalid page_token", apperr.FieldViolation{
			Field: "page_token", Description: "was issued for different filters; start again without a page_token"})
	}
	return normalizeID(pt.After), nil
}

// filterHash identifies a filter in page tokens. It is short and not secret: it only has to tell filters
// apart, and the token grants nothing the caller could not ask for directly.
func filterHash(f Filter) string {
	sum := sha256.Sum256([]byte(string(f.Status) + "\x00" + string(f.Role) + "\x00" + f.Search))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}
