package grpcapi

import (
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/platform/auth"
)

// Policy says who may call each DispatchService method. It decides by role and service identity only;
// which task a caller may see or change (a customer their own, a courier those they hold or were
// offered) is the domain's object-level check, which answers NOT_FOUND so that ids cannot be probed.
//
//   - CreateTask: customers, dispatchers, administrators, and the simulator, which creates demo tasks
//     for its customers.
//   - GetTask, ListTasks, WatchTask, WatchTasks: every user, each seeing what the domain lets them see,
//     and the simulator. GetTask and WatchTask also admit anonymous callers, for share links: the domain
//     answers them by the request's share_token alone, NOT_FOUND for a bad token, and UNAUTHENTICATED
//     without one.
//   - CreateTaskShareLink: customers (their own tasks), dispatchers and administrators.
//   - CancelTask: customers (their own tasks), dispatchers and administrators.
//   - AssignTask, ExplainAssignment: dispatchers and administrators.
//   - GetCourierStatus: couriers (their own overview), dispatchers and administrators.
//   - StreamAssignments: couriers only; the session's courier is derived from the user's token, so a
//     service identity has no courier to hold a session for.
//   - UploadProof: couriers.
//   - GetUpload: every user; the domain admits the uploading courier and staff, and answers everyone
//     else NOT_FOUND, as the contract says ("the caller may not see it"), customers included.
//   - GetProofContent: every user; the domain admits the uploading courier, the task's customer and
//     staff.
func Policy() auth.Policy {
	const (
		customer   = auth.RoleCustomer
		courier    = auth.RoleCourier
		dispatcher = auth.RoleDispatcher
		admin      = auth.RoleAdmin
	)
	staff := auth.Users(dispatcher, admin)
	everyUser := auth.Users(customer, courier, dispatcher, admin)
	simulator := auth.Internal("simulator")
	shareLink := auth.CapabilityHolders()
	return auth.Policy{
		dispatchv1.DispatchService_CreateTask_FullMethodName:          auth.Users(customer, dispatcher, admin).Or(simulator),
		dispatchv1.DispatchService_GetTask_FullMethodName:             everyUser.Or(simulator).Or(shareLink),
		dispatchv1.DispatchService_ListTasks_FullMethodName:           everyUser.Or(simulator),
		dispatchv1.DispatchService_CancelTask_FullMethodName:          auth.Users(customer, dispatcher, admin),
		dispatchv1.DispatchService_AssignTask_FullMethodName:          staff,
		dispatchv1.DispatchService_ExplainAssignment_FullMethodName:   staff,
		dispatchv1.DispatchService_WatchTask_FullMethodName:           everyUser.Or(simulator).Or(shareLink),
		dispatchv1.DispatchService_WatchTasks_FullMethodName:          everyUser.Or(simulator),
		dispatchv1.DispatchService_GetCourierStatus_FullMethodName:    auth.Users(courier, dispatcher, admin),
		dispatchv1.DispatchService_StreamAssignments_FullMethodName:   auth.Users(courier),
		dispatchv1.DispatchService_UploadProof_FullMethodName:         auth.Users(courier),
		dispatchv1.DispatchService_GetUpload_FullMethodName:           everyUser,
		dispatchv1.DispatchService_GetProofContent_FullMethodName:     everyUser,
		dispatchv1.DispatchService_CreateTaskShareLink_FullMethodName: auth.Users(customer, dispatcher, admin),
	}
}
