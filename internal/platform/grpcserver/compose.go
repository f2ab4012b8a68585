package grpcserver

import (
	"context"
	"sync"

	"google.golang.org/grpc"
)

// composeUnary makes one interceptor of ics, outermost first, that runs them as grpc.ChainUnaryInterceptor
// does, without its closure per interceptor and call (one allocation per stage and call, about ten per
// call for the chain; BENCHMARKS.md): each level's next handler is made once per pooled chain state, which
// a call borrows for its duration. The next handlers may be called more than once, as with grpc-go's
// chain, but not after the interceptor that received them has returned.
func composeUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if len(ics) == 1 {
		return ics[0]
	}
	pool := &sync.Pool{New: func() any { return newUnaryChainState(ics) }}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		st := pool.Get().(*unaryChainState)
		st.info, st.handler = info, handler
		resp, err := ics[0](ctx, req, info, st.nexts[0])
		st.info, st.handler = nil, nil
		pool.Put(st)
		return resp, err
	}
}

// unaryChainState is one call's view of a composed chain: nexts[i] runs ics[i+1] with the call's info
// and, last, its handler.
type unaryChainState struct {
	info    *grpc.UnaryServerInfo
	handler grpc.UnaryHandler
	nexts   []grpc.UnaryHandler
}

func newUnaryChainState(ics []grpc.UnaryServerInterceptor) *unaryChainState {
	st := &unaryChainState{nexts: make([]grpc.UnaryHandler, len(ics)-1)}
	for i := range st.nexts {
		ic := ics[i+1]
		if i == len(st.nexts)-1 {
			st.nexts[i] = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, st.info, st.handler) }
		} else {
			st.nexts[i] = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, st.info, st.nexts[i+1]) }
		}
	}
	return st
}
