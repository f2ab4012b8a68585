package grpcauth

import "google.golang.org/protobuf/reflect/protoreflect"

// Methods returns the full method names ("/package.Service/Method") of the service described by sd, such
// as routev1.File_lastmile_route_v1_route_proto.Services().ByName("RouteService").
func Methods(sd protoreflect.ServiceDescriptor) []string {
	ms := sd.Methods()
	out := make([]string, 0, ms.Len())
	for i := range ms.Len() {
		out = append(out, "/"+string(sd.FullName())+"/"+string(ms.Get(i).Name()))
	}
	return out
}
