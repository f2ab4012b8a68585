package storetest

import (
	"bytes"
	"sync"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
)

func shareKey(id uint32, fill byte, minutes int) dispatch.ShareKey {
	return dispatch.ShareKey{ID: id, Secret: bytes.Repeat([]byte{fill}, dispatch.ShareKeySize), CreateTime: at(minutes)}
}

// testShareKeys: the first key is created on first use and kept; later candidates are ignored; keys are
// read by id; a missing key is NotFound; a bad candidate is Invalid and stores nothing.
func testShareKeys(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	keys := s.ShareKeys()
	_, err := keys.ShareKey(ctx, 1)
	wantCode(t, "ShareKey(1) of an empty store", err, apperr.NotFound)
	_, err = keys.CurrentShareKey(ctx, dispatch.ShareKey{ID: 1, Secret: []byte("short"), CreateTime: at(0)})
	wantCode(t, "CurrentShareKey(short secret)", err, apperr.Invalid)

	first := shareKey(1, 0xA1, 1)
	got, err := keys.CurrentShareKey(ctx, first)
	if err != nil {
		t.Fatalf("CurrentShareKey(first) = %v", err)
	}
	if got.ID != 1 || !bytes.Equal(got.Secret, first.Secret) || !got.CreateTime.Equal(utc(first.CreateTime)) {
		t.Errorf("CurrentShareKey(first) = %d %x %v, want 1 %x %v", got.ID, got.Secret, got.CreateTime, first.Secret, utc(first.CreateTime))
	}
	again, err := keys.CurrentShareKey(ctx, shareKey(1, 0xB2, 2))
	if err != nil {
		t.Fatalf("CurrentShareKey(second candidate) = %v", err)
	}
	if again.ID != 1 || !bytes.Equal(again.Secret, first.Secret) {
		t.Errorf("CurrentShareKey(second candidate) = %d %x, want the first key 1 %x", again.ID, again.Secret, first.Secret)
	}
	byID, err := keys.ShareKey(ctx, 1)
	if err != nil || !bytes.Equal(byID.Secret, first.Secret) || !byID.CreateTime.Equal(utc(first.CreateTime)) {
		t.Errorf("ShareKey(1) = %x %v, %v, want %x %v", byID.Secret, byID.CreateTime, err, first.Secret, utc(first.CreateTime))
	}
	_, err = keys.ShareKey(ctx, 2)
	wantCode(t, "ShareKey(2)", err, apperr.NotFound)
	_, err = keys.ShareKey(ctx, 1<<32-1)
	wantCode(t, "ShareKey(max)", err, apperr.NotFound)
}

// testShareKeysConcurrent: replicas creating the first key at once all get the same one.
func testShareKeysConcurrent(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const n = 8
	got := make([]dispatch.ShareKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = s.ShareKeys().CurrentShareKey(ctx, shareKey(1, byte(i+1), i))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CurrentShareKey #%d = %v", i, errs[i])
		}
		if got[i].ID != 1 || !bytes.Equal(got[i].Secret, got[0].Secret) {
			t.Errorf("CurrentShareKey #%d = %d %x, want what #0 got: 1 %x", i, got[i].ID, got[i].Secret, got[0].Secret)
		}
	}
}
