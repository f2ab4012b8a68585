package grpcserver

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
)

// composeUnary runs the interceptors outermost first with the call's info and handler, like grpc-go's
// chain, also when an interceptor calls its next handler twice and when calls run concurrently.
func TestComposeUnary(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, s)
	}
	stage := func(name string, times int) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			record(name + " " + info.FullMethod)
			var resp any
			var err error
			for range times {
				if resp, err = handler(ctx, req.(string)+"+"+name); err != nil {
					return nil, err
				}
			}
			return resp, nil
		}
	}
	chain := composeUnary([]grpc.UnaryServerInterceptor{stage("a", 1), stage("b", 2), stage("c", 1)})
	resp, err := chain(t.Context(), "req", &grpc.UnaryServerInfo{FullMethod: "/s/M"}, func(_ context.Context, req any) (any, error) {
		record("handler " + req.(string))
		return "resp " + req.(string), nil
	})
	if err != nil || resp != "resp req+a+b+c" {
		t.Fatalf("chain() = %v, %v; want resp req+a+b+c, nil", resp, err)
	}
	want := []string{"a /s/M", "b /s/M", "c /s/M", "handler req+a+b+c", "c /s/M", "handler req+a+b+c"}
	if !slices.Equal(trace, want) {
		t.Errorf("trace = %q, want %q", trace, want)
	}

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			method := fmt.Sprintf("/s/M%d", i)
			resp, err := chain(t.Context(), "r", &grpc.UnaryServerInfo{FullMethod: method}, func(_ context.Context, req any) (any, error) {
				return method + " " + req.(string), nil
			})
			if want := method + " r+a+b+c"; err != nil || resp != want {
				t.Errorf("concurrent chain() = %v, %v; want %s, nil", resp, err, want)
			}
		})
	}
	wg.Wait()

	single := stage("only", 1)
	if got := composeUnary([]grpc.UnaryServerInterceptor{single}); fmt.Sprint(got) != fmt.Sprint(single) {
		t.Errorf("composeUnary of one interceptor is not that interceptor")
	}
}
