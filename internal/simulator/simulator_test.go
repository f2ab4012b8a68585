package simulator

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDistanceAndBearing(t *testing.T) {
	alex := Point{Lat: 52.5200, Lng: 13.4050}
	for _, tc := range []struct {
		θ, d float64
	}{{0, 1000}, {90, 2500}, {180, 300}, {270, 8000}, {45, 5000}} {
		p := offset(alex, tc.d, tc.θ)
		if got := distance(alex, p); math.Abs(got-tc.d) > tc.d*0.005 {
			t.Errorf("distance to offset(%g m, %g°) = %g m, want %g m within 0.5%%", tc.d, tc.θ, got, tc.d)
		}
		if got := bearing(alex, p); math.Abs(math.Mod(got-tc.θ+540, 360)-180) > 0.5 {
			t.Errorf("bearing to offset(%g m, %g°) = %g°, want %g°", tc.d, tc.θ, got, tc.θ)
		}
	}
	if got := lerp(Point{0, 0}, Point{2, 4}, 0.25); got != (Point{0.5, 1}) {
		t.Errorf("lerp a quarter of the way = %v, want {0.5 1}", got)
	}
}

func TestAreaRandomStaysInside(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		if p := Berlin.random(rng); !Berlin.contains(p) {
			t.Fatalf("Berlin.random() = %v, %g m from the centre, want within %g m", p, distance(Berlin.Center, p), Berlin.RadiusMeters)
		}
	}
}

func TestTaskRequest(t *testing.T) {
	r := &run{cfg: Config{Area: Area{Center: Berlin.Center, RadiusMeters: 2000}}, id: "abcd1234", rng: rand.New(rand.NewPCG(3, 4))}
	photos := 0
	for n := range 500 {
		req := r.taskRequest(n)
		if want := "sim-abcd1234-"; !strings.HasPrefix(req.GetRequestId(), want) {
			t.Fatalf("request id %q, want the prefix %q", req.GetRequestId(), want)
		}
		pickup, dropoff := point(req.GetPickup().GetLocation()), point(req.GetDropoff().GetLocation())
		if !r.cfg.Area.contains(pickup) || !r.cfg.Area.contains(dropoff) {
			t.Fatalf("task %d: pickup %v or dropoff %v outside the area", n, pickup, dropoff)
		}
		if d := distance(pickup, dropoff); d > 1000*1.01 {
			t.Fatalf("task %d: dropoff %g m from the pickup, want at most half the radius (1000 m)", n, d)
		}
		if len(req.GetProofRequirements()) == 1 {
			photos++
		}
		if !r.isRunTask(&dispatchv1.Task{RequestId: req.GetRequestId()}) {
			t.Fatalf("isRunTask(%q) = false, want true", req.GetRequestId())
		}
	}
	if photos < 150 || photos > 350 {
		t.Errorf("%d of 500 tasks ask for a photo, want about half", photos)
	}
	if r.isRunTask(&dispatchv1.Task{RequestId: "sim-other-1"}) {
		t.Error("isRunTask(another run's task) = true, want false")
	}
}

func TestSamplesPercentiles(t *testing.T) {
	var s samples
	if got := s.percentiles(50); got[0] != 0 {
		t.Errorf("percentile of no samples = %v, want 0", got[0])
	}
	for i := 100; i >= 1; i-- {
		s.add(time.Duration(i) * time.Millisecond)
	}
	got := s.percentiles(0, 50, 99, 100)
	want := []time.Duration{time.Millisecond, 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("percentiles = %v, want %v", got, want)
			break
		}
	}
}

func TestSamplesStayBounded(t *testing.T) {
	s := samples{rng: 1}
	for i := range maxSamples + 5000 {
		s.add(time.Duration(i))
	}
	if len(s.items) != maxSamples || s.seen != maxSamples+5000 {
		t.Errorf("kept %d of %d samples, want %d", len(s.items), s.seen, maxSamples)
	}
}

func TestPhotoIsAPNG(t *testing.T) {
	data := photo(7)
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil || img.Bounds().Dx() != 32 {
		t.Fatalf("photo() decodes to %v, %v; want a 32x32 PNG", img, err)
	}
}

func TestTravelCaps(t *testing.T) {
	// Each cap stays below what the courier service accepts for the mode (walking 4, bicycle 15,
	// scooter 30, car and van 60 m/s), and the average speeds below the caps.
	limits := map[geov1.TransportMode]float64{
		geov1.TransportMode_TRANSPORT_MODE_WALKING: 4, geov1.TransportMode_TRANSPORT_MODE_BICYCLE: 15,
		geov1.TransportMode_TRANSPORT_MODE_SCOOTER: 30, geov1.TransportMode_TRANSPORT_MODE_CAR: 60, geov1.TransportMode_TRANSPORT_MODE_VAN: 60,
	}
	for m, limit := range limits {
		if c := modeSpeedCap(m); !(c < limit && modeSpeed(m) < c) {
			t.Errorf("%v: average %g m/s, cap %g m/s; want average < cap < %g", m, modeSpeed(m), c, limit)
		}
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	good := func() Config {
		return Config{Target: "localhost:9090", AdminEmail: "a@example.com", AdminPassword: "p", Couriers: 1, Rate: 1}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no target", func(c *Config) { c.Target = "" }, "no target"},
		{"a service without an address", func(c *Config) {
			c.Target, c.Addrs = "", Addrs{Identity: "i:1", Courier: "c:1", Route: "r:1"}
		}, "no target: no address for dispatch"},
		{"a target without a port", func(c *Config) { c.Target = "dispatch" }, "address of identity: target \"dispatch\""},
		{"an address without a port", func(c *Config) { c.Addrs.Courier = "h1:1,h2" }, "address of courier"},
		{"no admin", func(c *Config) { c.AdminPassword = "" }, "admin credentials"},
		{"no couriers", func(c *Config) { c.Couriers = 0 }, "couriers must be"},
		{"too many couriers", func(c *Config) { c.Couriers = MaxCouriers + 1 }, "couriers must be"},
		{"rate", func(c *Config) { c.Rate = MaxRate * 2 }, "rate must be"},
		{"NaN rate", func(c *Config) { c.Rate = math.NaN() }, "rate must be"},
		{"radius", func(c *Config) { c.Area = Area{Center: Berlin.Center, RadiusMeters: 10} }, "radius"},
		{"latitude", func(c *Config) { c.Area = Area{Center: Point{Lat: 95}, RadiusMeters: 1000} }, "latitude"},
		{"decline", func(c *Config) { c.DeclineRatio = 1.5 }, "decline ratio"},
		{"speed-up", func(c *Config) { c.Speedup = 1000 }, "speed-up"},
		{"fix interval", func(c *Config) { c.FixInterval = time.Millisecond }, "fix interval"},
		{"mode", func(c *Config) { c.Modes = []geov1.TransportMode{geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED} }, "transport mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			if err := c.defaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("defaults() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c := good()
	if err := c.defaults(); err != nil {
		t.Fatalf("defaults() of a good config = %v", err)
	}
	split := Config{Addrs: Addrs{Identity: "i:1", Courier: "dns:///c:1", Route: "r1:1,r2:1", Dispatch: "d:1"}, AdminEmail: "a@example.com", AdminPassword: "p", Couriers: 1, Rate: 1}
	if err := split.defaults(); err != nil {
		t.Errorf("defaults() of a split deployment's addresses without a target = %v, want nil", err)
	}
	if c.Area != Berlin || c.Customers != 1 || c.Speedup != 1 || c.FixInterval != time.Second || c.MaxOpen != 20 || len(c.Modes) != len(defaultModes) {
		t.Errorf("defaults() = %+v, want Berlin, one customer, real time, 1s fixes, 20 open tasks, the default modes", c)
	}
}

func TestRunFailsWithoutAServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Target: "127.0.0.1:1", AdminEmail: "a@example.com", AdminPassword: "p", Couriers: 1, Rate: 1})
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("Run against nothing = %v, want the admin's login error", err)
	}
}

func TestEventQueueIsBounded(t *testing.T) {
	q := eventQueue{notify: make(chan struct{}, 1)}
	for i := range maxQueued + 10 {
		q.push(&dispatchv1.StreamAssignmentsResponse{Cursor: int64(i + 1)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	for {
		if _, ok := q.tryPop(); !ok {
			break
		}
		n++
	}
	if n != maxQueued {
		t.Errorf("queued %d, want the bound %d", n, maxQueued)
	}
	cancel()
	if _, ok := q.pop(ctx); ok {
		t.Error("pop after cancel = ok, want false")
	}
}

// TestOtherRunsTasksAreCountedApart checks that a task the run did not create (an earlier run's, still
// waiting in the deployment), which a courier accepts and carries like any other, counts neither as one of
// the run's deliveries (which would make the run's own tasks look finished: the drain ended early, the
// summary said none were open) nor in its time to assign, and is reported on a line of its own.
func TestOtherRunsTasksAreCountedApart(t *testing.T) {
	r := &run{id: "abcd1234", stats: &Stats{}}
	now := time.Now()
	own := &dispatchv1.Task{RequestId: "sim-abcd1234-7", CreateTime: timestamppb.New(now.Add(-3 * time.Second)), AssignTime: timestamppb.New(now)}
	other := &dispatchv1.Task{RequestId: "sim-efgh5678-1", CreateTime: timestamppb.New(now.Add(-30 * time.Minute)), AssignTime: timestamppb.New(now)}
	r.stats.TasksCreated.Add(1)
	carry := func(t *dispatchv1.Task) {
		r.accepted(t)
		r.count(t, &r.stats.PickedUp)
		r.count(t, &r.stats.ProofsUploaded)
		r.count(t, &r.stats.Delivered)
	}
	carry(other)
	if got := r.stats.open(); got != 1 {
		t.Errorf("open after delivering another run's task = %d, want 1 (the run's own is still open)", got)
	}
	carry(own)
	s := r.stats
	if s.open() != 0 || s.Delivered.Load() != 1 || s.PickedUp.Load() != 1 || s.ProofsUploaded.Load() != 1 || s.Accepted.Load() != 2 || s.OtherTasks.Load() != 1 {
		t.Errorf("open %d, delivered %d, picked up %d, proofs %d, accepted %d, other tasks %d; want 0, 1, 1, 1, 2, 1",
			s.open(), s.Delivered.Load(), s.PickedUp.Load(), s.ProofsUploaded.Load(), s.Accepted.Load(), s.OtherTasks.Load())
	}
	if got := s.TimeToAssign.percentiles(100)[0]; got != 3*time.Second {
		t.Errorf("longest time to assign = %s, want the run's task's 3s", got)
	}
	var out bytes.Buffer
	s.Summary(&out, time.Minute)
	if want := "  other tasks         1 accepted that this run did not create (not counted in delivered, open, times)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("summary = %q, want the line %q", out.String(), want)
	}
	out.Reset()
	(&Stats{}).Summary(&out, time.Minute)
	if strings.Contains(out.String(), "other tasks") {
		t.Errorf("summary of a run without other tasks = %q, want no other tasks line", out.String())
	}
}
