package grpcserver

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"lastmile/internal/platform/auth"
)

// Anyone may watch health without credentials. Anonymous callers from as many addresses as they like
// cannot take the health watches of lastmile's own services: a service whose watch is refused takes this
// server out of its rotation, so that a split deployment's replica whose connection was recycled could no
// longer call it at all.
func TestHealthWatchKeepsSlotsForServices(t *testing.T) {
	l, err := newStreamLimiter(nil, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lim := l.limit(healthWatch)
	staff := func(p auth.Principal) bool { return lim.Staff != nil && lim.Staff(p) }
	anonymous, user := auth.Principal{}, auth.Principal{Kind: auth.User, Subject: "u-1", Roles: []string{auth.RoleCustomer}}
	if staff(anonymous) || staff(user) {
		t.Fatal("an anonymous caller or a user may take the services' health watches")
	}
	taken := 0
	for i := 0; ; i++ {
		caller := fmt.Sprintf("addr:10.0.%d.%d", i/256, i%256)
		n := 0
		for n < lim.PerCaller && l.acquire(healthWatch, caller, staff(anonymous), lim) == nil {
			n++
		}
		taken += n
		if n == 0 {
			break
		}
	}
	if taken >= lim.Total {
		t.Fatalf("anonymous callers took all %d health watches", taken)
	}
	for _, svc := range []string{"dispatch", "gateway", "courier", "identity"} {
		p := auth.Principal{Kind: auth.Service, Subject: svc}
		for j := range 64 {
			if err := l.acquire(healthWatch, "service:"+svc, staff(p), lim); err != nil {
				t.Fatalf("health watch %d of service %s with %d taken by anonymous callers: %v", j+1, svc, taken, err)
			}
		}
	}
}
