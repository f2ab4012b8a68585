package grpcclient

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// DecodeResponse returns a call option that decodes a response of type T with decode instead of
// proto.Unmarshal, for the few large responses of hot internal calls whose messages proto.Unmarshal
// allocates one at a time (a matrix's elements, a search's couriers): decode may allocate them in arrays.
//
// decode receives the encoded response and a reset message. It must either fill the message exactly as
// proto.Unmarshal would and report true, or report false for anything it does not handle (an unknown
// field, an unexpected wire type, a string that is not UTF-8, a malformed encoding); the message is then
// reset and decoded by proto.Unmarshal, which accepts or refuses it as it always did. decode must not keep
// b, which is returned to a pool after the call. Requests, and
// responses of other types, go through grpc-go's proto codec unchanged, under its name ("proto"), so
// nothing on the wire changes.
func DecodeResponse[T proto.Message](decode func(b []byte, m T) bool) grpc.CallOption {
	return grpc.ForceCodecV2(responseCodec[T]{proto: encoding.GetCodecV2(protocodec.Name), decode: decode})
}

type responseCodec[T proto.Message] struct {
	proto  encoding.CodecV2
	decode func(b []byte, m T) bool
}

func (c responseCodec[T]) Name() string { return protocodec.Name }

func (c responseCodec[T]) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c responseCodec[T]) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(T)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	proto.Reset(m)
	if c.decode(buf.ReadOnlyData(), m) {
		return nil
	}
	proto.Reset(m)
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
