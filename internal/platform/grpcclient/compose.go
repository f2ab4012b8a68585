package grpcclient

import (
	"context"
	"sync"

	"google.golang.org/grpc"
)

// composeUnary makes one interceptor of ics, outermost first, that runs them as grpc.WithChainUnaryInterceptor
// does, without its closure per interceptor and call (one allocation per stage and call; BENCHMARKS.md):
// each level's next invoker is made once per pooled chain state, which a call borrows for its duration.
// The next invokers may be called more than once (retries), but not after the interceptor that received
// them has returned.
func composeUnary(ics []grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	if len(ics) == 1 {
		return ics[0]
	}
	pool := &sync.Pool{New: func() any { return newUnaryChainState(ics) }}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		st := pool.Get().(*unaryChainState)
		st.invoker = invoker
		err := ics[0](ctx, method, req, reply, cc, st.nexts[0], opts...)
		st.invoker = nil
		pool.Put(st)
		return err
	}
}

// unaryChainState is one call's view of a composed chain: nexts[i] runs ics[i+1] and, last, the call's
// invoker.
type unaryChainState struct {
	invoker grpc.UnaryInvoker
	nexts   []grpc.UnaryInvoker
}

func newUnaryChainState(ics []grpc.UnaryClientInterceptor) *unaryChainState {
	st := &unaryChainState{nexts: make([]grpc.UnaryInvoker, len(ics)-1)}
	for i := range st.nexts {
		ic := ics[i+1]
		if i == len(st.nexts)-1 {
			st.nexts[i] = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				return ic(ctx, method, req, reply, cc, st.invoker, opts...)
			}
		} else {
			st.nexts[i] = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
				return ic(ctx, method, req, reply, cc, st.nexts[i+1], opts...)
			}
		}
	}
	return st
}
