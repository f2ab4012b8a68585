package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/telemetry/logtest"
	"lastmile/internal/simulator"
)

// TestDemoRestartRetiresAnEarlierRun runs the demo twice on one data directory. The first run stops with
// its simulated couriers AVAILABLE or BUSY and tasks open (walking couriers at real speed, no drain), a
// simulated courier carrying a picked-up parcel, and an operator's task beside them; the second start
// cancels exactly the first run's open tasks (reason OTHER, the retire comment), has the parcel delivered
// by its courier (with a photo), sets exactly those couriers OFFLINE, says so in one line, and leaves the
// operator's task and its own run's tasks alone.
func TestDemoRestartRetiresAnEarlierRun(t *testing.T) {
	const email, password = "demo-admin@example.com", "demo test admin password, long enough"
	dataDir := t.TempDir()
	var sim simulator.Config // the running demo's deployment, as RetireEarlierRuns reaches it
	start := func(after func(context.Context, grpc.ClientConnInterface, identityv1.UserServiceClient, dispatchv1.DispatchServiceClient, courierv1.CourierServiceClient) error) string {
		t.Helper()
		var stdout logtest.Buffer
		env := Env{Getenv: envOf(map[string]string{"LASTMILE_ADMIN_EMAIL": email, "LASTMILE_ADMIN_PASSWORD": password}), Stdout: &stdout, Stderr: &logtest.Buffer{}}
		cfg, d, err := parseDemo([]string{
			"--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
			"--shutdown-timeout", "5s", "--sim-couriers", "4", "--sim-rate", "4", "--sim-duration", "3s", "--sim-drain", "0s",
			"--sim-radius", "3000", "--sim-modes", "walking", "--sim-speedup", "1",
		}, env)
		if err != nil {
			t.Fatalf("parseDemo: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard, not a timing assertion
		defer cancel()
		ran := false
		_, err = demo(ctx, cfg, d, env, func(ctx context.Context, ends Endpoints, _ *simulator.Stats) error {
			ran = true
			tlsc, err := caTLS(dataDir + "/tls/ca.crt")
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient(loopback(ends.GRPC), grpc.WithTransportCredentials(credentials.NewTLS(tlsc)))
			if err != nil {
				return err
			}
			defer conn.Close()
			sim = simulator.Config{Target: loopback(ends.GRPC), TLS: tlsc, AdminEmail: email, AdminPassword: password, Couriers: 1, Rate: 1}
			login, err := identityv1.NewAuthServiceClient(conn).Login(ctx, &identityv1.LoginRequest{
				Identifier: &identityv1.LoginRequest_Email{Email: email}, Password: password})
			if err != nil {
				return err
			}
			actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+login.GetAccessToken())
			return after(actx, conn, identityv1.NewUserServiceClient(conn), dispatchv1.NewDispatchServiceClient(conn), courierv1.NewCourierServiceClient(conn))
		})
		if err != nil || !ran {
			t.Fatalf("demo = %v (check ran: %v), want nil", err, ran)
		}
		return stdout.String()
	}
	listTasks := func(ctx context.Context, dc dispatchv1.DispatchServiceClient) []*dispatchv1.Task {
		var out []*dispatchv1.Task
		for token := ""; ; {
			page, err := dc.ListTasks(ctx, &dispatchv1.ListTasksRequest{PageSize: 1000, PageToken: token, View: dispatchv1.TaskView_TASK_VIEW_FULL})
			if err != nil {
				t.Fatalf("ListTasks: %v", err)
			}
			out = append(out, page.GetTasks()...)
			if token = page.GetNextPageToken(); token == "" {
				return out
			}
		}
	}
	listCouriers := func(ctx context.Context, cc courierv1.CourierServiceClient) []*courierv1.Courier {
		page, err := cc.ListCouriers(ctx, &courierv1.ListCouriersRequest{PageSize: 1000})
		if err != nil || page.GetNextPageToken() != "" {
			t.Fatalf("ListCouriers = %v (next page %q), want one page", err, page.GetNextPageToken())
		}
		return page.GetCouriers()
	}

	// The first run, and what it leaves (read while its services still run: with its bots stopped no task
	// is picked up or delivered any more, and open tasks stay open): its open tasks, its couriers, and an
	// operator's task beside them.
	open := map[string]bool{}       // the first run's tasks CancelTask accepts
	couriers := map[string]bool{}   // the first run's couriers not OFFLINE and holding no picked-up parcel
	pickedUp := map[string]string{} // the first run's picked-up tasks, and their couriers
	var operatorTask string
	first := start(func(ctx context.Context, conn grpc.ClientConnInterface, uc identityv1.UserServiceClient, dc dispatchv1.DispatchServiceClient, cc courierv1.CourierServiceClient) error {
		cust, err := uc.CreateUser(ctx, &identityv1.CreateUserRequest{Email: "shop@example.com", Password: "a customer password, long enough",
			DisplayName: "Shop", Role: identityv1.Role_ROLE_CUSTOMER})
		if err != nil {
			return fmt.Errorf("CreateUser: %w", err)
		}
		task, err := dc.CreateTask(ctx, &dispatchv1.CreateTaskRequest{RequestId: "operator-1", CustomerId: cust.GetId(),
			Pickup:  &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.52, Longitude: 13.405}, Address: "Shop"},
			Dropoff: &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.525, Longitude: 13.41}, Address: "Home"},
			Size:    dispatchv1.ParcelSize_PARCEL_SIZE_SMALL})
		if err != nil {
			return fmt.Errorf("CreateTask as the operator: %w", err)
		}
		operatorTask = task.GetId()
		if err := pickUpAsASimCourier(ctx, conn, cust.GetId()); err != nil {
			return err
		}
		carrying := map[string]bool{}
		for _, task := range listTasks(ctx, dc) {
			if !strings.HasPrefix(task.GetRequestId(), "sim-") {
				continue
			}
			switch task.GetState() {
			case dispatchv1.TaskState_TASK_STATE_PENDING, dispatchv1.TaskState_TASK_STATE_OFFERED, dispatchv1.TaskState_TASK_STATE_ASSIGNED,
				dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE:
				open[task.GetId()] = true
			case dispatchv1.TaskState_TASK_STATE_PICKED_UP:
				pickedUp[task.GetId()] = task.GetCourierId()
				carrying[task.GetCourierId()] = true
			}
		}
		for _, c := range listCouriers(ctx, cc) {
			if c.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE || carrying[c.GetId()] {
				couriers[c.GetId()] = true
			}
		}
		return nil
	})
	if strings.Contains(first, "retired") {
		t.Errorf("first start's output = %q, want no retire line (nothing to retire)", first)
	}
	if len(open) == 0 || len(couriers) == 0 || len(pickedUp) == 0 {
		t.Fatalf("the first run left %d open tasks, %d picked up and %d couriers not offline, want some of each", len(open), len(pickedUp), len(couriers))
	}

	second := start(func(ctx context.Context, _ grpc.ClientConnInterface, uc identityv1.UserServiceClient, dc dispatchv1.DispatchServiceClient, cc courierv1.CourierServiceClient) error {
		for _, task := range listTasks(ctx, dc) {
			h := task.GetHistory()
			retired := task.GetState() == dispatchv1.TaskState_TASK_STATE_CANCELLED && len(h) > 0 && h[len(h)-1].GetComment() == simulator.RetireComment
			switch {
			case open[task.GetId()]:
				if !retired || task.GetCancelReason() != dispatchv1.CancelReason_CANCEL_REASON_OTHER {
					t.Errorf("the first run's open task %s is %s (reason %s, history %v), want CANCELLED with reason OTHER and the retire comment",
						task.GetId(), task.GetState(), task.GetCancelReason(), h)
				}
			case retired:
				t.Errorf("task %s (request id %q) was retired, want only the first run's open tasks", task.GetId(), task.GetRequestId())
			case pickedUp[task.GetId()] != "":
				if task.GetState() != dispatchv1.TaskState_TASK_STATE_DELIVERED || task.GetCourierId() != pickedUp[task.GetId()] || len(task.GetProofs()) != 1 {
					t.Errorf("the first run's picked-up task %s is %s by %s with %d proofs, want DELIVERED by %s with one photo",
						task.GetId(), task.GetState(), task.GetCourierId(), len(task.GetProofs()), pickedUp[task.GetId()])
				}
			case task.GetId() == operatorTask && task.GetState() == dispatchv1.TaskState_TASK_STATE_CANCELLED:
				t.Errorf("the operator's task was cancelled: %v", h)
			}
		}
		for _, c := range listCouriers(ctx, cc) {
			if couriers[c.GetId()] && c.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE {
				t.Errorf("the first run's courier %s is %s, want OFFLINE", c.GetId(), c.GetStatus())
			}
		}
		// Idempotent: once this run's leftovers are retired too (its bots have stopped), nothing is left.
		rctx := metadata.NewOutgoingContext(ctx, metadata.MD{}) // without the test's admin token
		if _, err := simulator.RetireEarlierRuns(rctx, sim); err != nil {
			return err
		}
		if again, err := simulator.RetireEarlierRuns(rctx, sim); err != nil || again.TasksCancelled != 0 || again.CouriersOffline != 0 {
			t.Errorf("RetireEarlierRuns once more = %+v, %v; want nothing cancelled or set offline", again, err)
		}
		return nil
	})
	want := fmt.Sprintf("demo: retired an earlier run: %d tasks cancelled, %d picked-up tasks delivered, %d couriers offline\n",
		len(open), len(pickedUp), len(couriers))
	if !strings.Contains(second, want) {
		t.Errorf("second start's output = %q, want the line %q", second, want)
	}
}

// pickUpAsASimCourier leaves a parcel with a simulated courier: it makes one (an account of the
// simulator's domain), assigns it a task of a simulated customer's kind (request id "sim-…", a photo
// required at the dropoff) and confirms the pickup over the courier's session, which then ends.
func pickUpAsASimCourier(ctx context.Context, conn grpc.ClientConnInterface, customer string) error {
	uc, dc, cc := identityv1.NewUserServiceClient(conn), dispatchv1.NewDispatchServiceClient(conn), courierv1.NewCourierServiceClient(conn)
	const email, password = "courier-1.earlier@sim.lastmile.example.com", "an earlier run's courier password"
	u, err := uc.CreateUser(ctx, &identityv1.CreateUserRequest{Email: email, Password: password, DisplayName: "Sim courier 1", Role: identityv1.Role_ROLE_COURIER})
	if err != nil {
		return fmt.Errorf("CreateUser: %w", err)
	}
	cr, err := cc.RegisterCourier(ctx, &courierv1.RegisterCourierRequest{UserId: u.GetId(), DisplayName: "Sim courier 1",
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE, Capacity: 2})
	if err != nil {
		return fmt.Errorf("RegisterCourier: %w", err)
	}
	if _, err := cc.SetStatus(ctx, &courierv1.SetStatusRequest{CourierId: cr.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
		return fmt.Errorf("SetStatus AVAILABLE: %w", err)
	}
	task, err := dc.CreateTask(ctx, &dispatchv1.CreateTaskRequest{RequestId: "sim-earlier-1", CustomerId: customer,
		Pickup:  &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.521, Longitude: 13.406}, Address: "Sim pickup"},
		Dropoff: &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: 52.526, Longitude: 13.411}, Address: "Sim dropoff"},
		Size:    dispatchv1.ParcelSize_PARCEL_SIZE_SMALL,
		ProofRequirements: []*dispatchv1.ProofRequirement{{Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, Stage: dispatchv1.TaskStage_TASK_STAGE_DROPOFF,
			Policy: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED}}})
	if err != nil {
		return fmt.Errorf("CreateTask: %w", err)
	}
	if _, err := dc.AssignTask(ctx, &dispatchv1.AssignTaskRequest{Id: task.GetId(), CourierId: cr.GetId()}); err != nil {
		return fmt.Errorf("AssignTask: %w", err)
	}
	// The courier's app: log in, open the session, confirm the pickup.
	login, err := identityv1.NewAuthServiceClient(conn).Login(ctx, &identityv1.LoginRequest{
		Identifier: &identityv1.LoginRequest_Email{Email: email}, Password: password})
	if err != nil {
		return fmt.Errorf("Login as the courier: %w", err)
	}
	sctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+login.GetAccessToken())))
	defer cancel()
	session, err := dc.StreamAssignments(sctx)
	if err != nil {
		return fmt.Errorf("StreamAssignments: %w", err)
	}
	if err := session.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{AppVersion: "test"}}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	if err := session.Send(&dispatchv1.StreamAssignmentsRequest{CommandId: "pickup-1", Kind: &dispatchv1.StreamAssignmentsRequest_PickedUp{
		PickedUp: &dispatchv1.ConfirmPickup{TaskId: task.GetId()}}}); err != nil {
		return fmt.Errorf("send the pickup: %w", err)
	}
	for {
		m, err := session.Recv()
		if err != nil {
			return fmt.Errorf("session: %w", err)
		}
		if r := m.GetCommandResult(); r != nil {
			if r.GetError() != nil || r.GetTask().GetState() != dispatchv1.TaskState_TASK_STATE_PICKED_UP {
				return fmt.Errorf("the pickup's result = %v, want the task PICKED_UP", r)
			}
			return nil
		}
	}
}
