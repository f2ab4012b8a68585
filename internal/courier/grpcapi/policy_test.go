package grpcapi_test

import (
	"testing"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/courier/grpcapi"
	"lastmile/internal/platform/auth/authtest"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestPolicyCoversEveryMethod(t *testing.T) {
	sd := courierv1.File_lastmile_courier_v1_courier_proto.Services().ByName("CourierService")
	methods := grpcauth.Methods(sd)
	if len(methods) != 14 {
		t.Errorf("CourierService has %d methods, want 14 (update this test and the policy together)", len(methods))
	}
	if err := grpcapi.Policy().Check(methods); err != nil {
		t.Error(err)
	}
}

func TestPolicy(t *testing.T) {
	// Who may call each method; everyone else is refused.
	allowed := map[string]string{
		"RegisterCourier":    "dispatcher admin",
		"GetCourier":         "courier dispatcher admin dispatch",
		"ListCouriers":       "dispatcher admin",
		"UpdateCourier":      "courier dispatcher admin",
		"SetAvailability":    "courier dispatcher admin",
		"GetAvailability":    "courier dispatcher admin",
		"IsAvailable":        "courier dispatcher admin",
		"SetStatus":          "courier dispatcher admin",
		"ReportLocations":    "courier simulator",
		"GetCourierStatus":   "courier dispatcher admin dispatch",
		"FindNearbyCouriers": "dispatch",
		"ClaimCourier":       "dispatch",
		"ReleaseCourier":     "dispatch",
		"WatchCouriers":      "dispatcher admin dispatch",
	}
	authtest.CheckPolicy(t, grpcapi.Policy(), courierv1.CourierService_ServiceDesc.ServiceName, allowed)
}
