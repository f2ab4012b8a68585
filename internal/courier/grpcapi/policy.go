package grpcapi

import (
	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/platform/auth"
)

// Policy says who may call each CourierService method. It decides by role and service identity only;
// which courier a caller may act on is the domain's object-level check (a courier acts on their own
// record only; dispatchers, admins and admitted services on any).
//
//   - Profiles: dispatchers and admins register and list; couriers may also read and (within limits)
//     update themselves.
//   - Availability and status: the courier themself, dispatchers and admins.
//   - ReportLocations: couriers, and the simulator's service identity that drives demo couriers.
//   - GetCourier: also dispatch, which finds the courier profile of the courier user calling it.
//   - GetCourierStatus: also dispatch, which shows the courier next to its tasks.
//   - FindNearbyCouriers, ClaimCourier, ReleaseCourier: dispatch only. They are internal: no user token,
//     whatever its role, reaches them, and the gateway cannot call them on a browser's behalf.
//   - WatchCouriers: dispatchers and admins (the dashboard), and dispatch, which follows assigned couriers.
func Policy() auth.Policy {
	const (
		courierRole = auth.RoleCourier
		dispatcher  = auth.RoleDispatcher
		admin       = auth.RoleAdmin
	)
	staff := auth.Users(dispatcher, admin)
	selfOrStaff := auth.Users(courierRole, dispatcher, admin)
	dispatch := auth.Internal("dispatch")
	return auth.Policy{
		courierv1.CourierService_RegisterCourier_FullMethodName:    staff,
		courierv1.CourierService_GetCourier_FullMethodName:         selfOrStaff.Or(dispatch),
		courierv1.CourierService_ListCouriers_FullMethodName:       staff,
		courierv1.CourierService_UpdateCourier_FullMethodName:      selfOrStaff,
		courierv1.CourierService_SetAvailability_FullMethodName:    selfOrStaff,
		courierv1.CourierService_GetAvailability_FullMethodName:    selfOrStaff,
		courierv1.CourierService_IsAvailable_FullMethodName:        selfOrStaff,
		courierv1.CourierService_SetStatus_FullMethodName:          selfOrStaff,
		courierv1.CourierService_ReportLocations_FullMethodName:    auth.Users(courierRole).Or(auth.Internal("simulator")),
		courierv1.CourierService_GetCourierStatus_FullMethodName:   selfOrStaff.Or(dispatch),
		courierv1.CourierService_FindNearbyCouriers_FullMethodName: dispatch,
		courierv1.CourierService_ClaimCourier_FullMethodName:       dispatch,
		courierv1.CourierService_ReleaseCourier_FullMethodName:     dispatch,
		courierv1.CourierService_WatchCouriers_FullMethodName:      staff.Or(dispatch),
	}
}
