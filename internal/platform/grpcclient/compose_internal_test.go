package grpcclient

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
)

// composeUnary runs the interceptors outermost first and the call's invoker last, like grpc-go's chain,
// also when an interceptor invokes twice (a retry) and when calls run concurrently.
func TestComposeUnary(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trace = append(trace, s)
	}
	stage := func(name string, times int) grpc.UnaryClientInterceptor {
		return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			record(name + " " + method)
			for range times {
				if err := invoker(ctx, method, req.(string)+"+"+name, reply, cc, opts...); err != nil {
					return err
				}
			}
			return nil
		}
	}
	chain := composeUnary([]grpc.UnaryClientInterceptor{stage("a", 1), stage("b", 2), stage("c", 1)})
	var reply string
	err := chain(t.Context(), "/s/M", "req", &reply, nil, func(_ context.Context, method string, req, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		record("invoker " + req.(string))
		*reply.(*string) = method + " " + req.(string)
		return nil
	})
	if err != nil || reply != "/s/M req+a+b+c" {
		t.Fatalf("chain() = %v, reply %q; want nil, /s/M req+a+b+c", err, reply)
	}
	want := []string{"a /s/M", "b /s/M", "c /s/M", "invoker req+a+b+c", "c /s/M", "invoker req+a+b+c"}
	if !slices.Equal(trace, want) {
		t.Errorf("trace = %q, want %q", trace, want)
	}

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			method := fmt.Sprintf("/s/M%d", i)
			var got string
			err := chain(t.Context(), method, "r", &got, nil, func(_ context.Context, method string, req, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
				*reply.(*string) = method + " " + req.(string)
				return nil
			})
			if want := method + " r+a+b+c"; err != nil || got != want {
				t.Errorf("concurrent chain() = %v, %q; want nil, %s", err, got, want)
			}
		})
	}
	wg.Wait()
}
