package courier

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// ListRequest asks for one page of couriers.
type ListRequest struct {
	// PageSize is 0 (DefaultPageSize) to MaxPageSize.
	PageSize int
	// PageToken is the previous page's NextPageToken, "" for the first page.
	PageToken string
	Filter    Filter
}

// ListPage is one page of couriers.
type ListPage struct {
	Couriers []Courier
	// NextPageToken is "" on the last page.
	NextPageToken string
	// Total counts the couriers matching the filter across all pages.
	Total int
}

// ListCouriers returns one page of couriers ordered by id (registration order). Dispatchers, admins and
// services only.
//
// Errors: Invalid for a page size out of range, an undefined filter value, or a malformed page token or
// one issued for other filters; PermissionDenied for other callers.
func (s *Service) ListCouriers(ctx context.Context, req ListRequest) (ListPage, error) {
	if err := requirePrivileged(ctx); err != nil {
		return ListPage{}, err
	}
	var v violations
	if req.PageSize < 0 || req.PageSize > MaxPageSize {
		v.add("page_size", fmt.Sprintf("must be between 0 and %d", MaxPageSize))
	}
	if req.Filter.Status != "" && !req.Filter.Status.Valid() {
		v.add("status", "is not a defined status")
	}
	if req.Filter.Mode != "" && !req.Filter.Mode.Valid() {
		v.add("transport_mode", "is not a defined transport mode")
	}
	after, ok := decodePageToken(req.PageToken, req.Filter)
	if !ok {
		v.add("page_token", "is malformed or was issued for other filters")
	}
	if err := v.err(); err != nil {
		return ListPage{}, err
	}
	size := req.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	cs, err := s.store.ListCouriers(ctx, req.Filter, after, size+1)
	if err != nil {
		return ListPage{}, fmt.Errorf("list couriers: %w", err)
	}
	total, err := s.store.CountCouriers(ctx, req.Filter)
	if err != nil {
		return ListPage{}, fmt.Errorf("count couriers: %w", err)
	}
	page := ListPage{Couriers: cs, Total: total}
	if len(cs) > size {
		page.Couriers = cs[:size]
		page.NextPageToken = encodePageToken(cs[size-1].ID, req.Filter)
	}
	return page, nil
}

// A page token is "v1|status|mode|after id", base64url-encoded: opaque to callers, bound to the filters.
func encodePageToken(after string, f Filter) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + string(f.Status) + "|" + string(f.Mode) + "|" + after))
}

func decodePageToken(tok string, f Filter) (after string, ok bool) {
	if tok == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] != string(f.Status) || parts[2] != string(f.Mode) {
		return "", false
	}
	return normalizeID(parts[3])
}
