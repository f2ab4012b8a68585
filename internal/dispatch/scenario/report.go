package scenario

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// Summary pools the runs of one policy at one load over its seeds.
type Summary struct {
	Policy, Load string
	Seeds        int
	Tasks        int
	Delivered    int
	OnTime       int
	Unassignable int
	Offers       int
	// OnTimeRate is on-time deliveries over tasks created; LateRate the rest (late, unassignable).
	OnTimeRate, LateRate float64
	// KMPerDelivery is courier kilometres over deliveries; PerCourierHour deliveries per courier-hour.
	KMPerDelivery, PerCourierHour float64
	// FirstOfferP50 and FirstOfferP99 are over every offered task; DecisionP99 over every choice.
	FirstOfferP50, FirstOfferP99, DecisionP99 time.Duration
	// Decisions counts the policy's choices.
	Decisions int
}

// Summarize pools results (of one policy and load).
func Summarize(results []Result) Summary {
	var s Summary
	var km, hours float64
	var first, dec []time.Duration
	for _, r := range results {
		s.Policy, s.Load = r.Policy, r.Load
		s.Seeds++
		s.Tasks += r.Tasks
		s.Delivered += r.Delivered
		s.OnTime += r.OnTime
		s.Unassignable += r.Unassignable
		s.Offers += r.Offers
		km += r.CourierKM
		hours += r.CourierHours
		first = append(first, r.FirstOffer...)
		dec = append(dec, r.Decisions...)
	}
	if s.Tasks > 0 {
		s.OnTimeRate = float64(s.OnTime) / float64(s.Tasks)
		s.LateRate = 1 - s.OnTimeRate
	}
	if s.Delivered > 0 {
		s.KMPerDelivery = km / float64(s.Delivered)
	}
	if hours > 0 {
		s.PerCourierHour = float64(s.Delivered) / hours
	}
	s.FirstOfferP50, s.FirstOfferP99 = Percentile(first, 0.50), Percentile(first, 0.99)
	s.DecisionP99 = Percentile(dec, 0.99)
	s.Decisions = len(dec)
	return s
}

// Percentile returns the q-quantile of ds (nearest rank), 0 for none.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Compare runs each policy that policies returns (a fresh set per run) on every load for seeds 1..seeds,
// all in the same worlds, and returns the summaries, per load in the policies' order. The policies'
// order rotates from seed to seed, so that none always runs first on a colder cache.
func Compare(ctx context.Context, loads []Load, seeds int, policies func() []Policy) ([]Summary, error) {
	var out []Summary
	for _, load := range loads {
		var names []string
		results := map[string][]Result{}
		for seed := 1; seed <= seeds; seed++ {
			cfg := NewConfig(load, uint64(seed))
			ps := policies()
			if names == nil {
				for _, p := range ps {
					names = append(names, p.Name())
				}
			}
			for i := range ps {
				p := ps[(i+seed)%len(ps)]
				res, err := Simulate(ctx, cfg, p, nil)
				if err != nil {
					return nil, fmt.Errorf("%s at %s load, seed %d: %w", p.Name(), load.Name, seed, err)
				}
				results[p.Name()] = append(results[p.Name()], res)
			}
		}
		for _, n := range names {
			out = append(out, Summarize(results[n]))
		}
	}
	return out, nil
}

// WriteTable writes summaries as a Markdown table.
func WriteTable(w io.Writer, sums []Summary) {
	fmt.Fprintln(w, "| load | policy | seeds | tasks | on time | late or unassignable | unassignable | km / delivery | deliveries / courier-hour | first offer p50 | first offer p99 | decision p99 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range sums {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %.1f %% | %.1f %% | %d | %.2f | %.2f | %s | %s | %s |\n",
			s.Load, s.Policy, s.Seeds, s.Tasks, 100*s.OnTimeRate, 100*s.LateRate, s.Unassignable, s.KMPerDelivery,
			s.PerCourierHour, s.FirstOfferP50.Round(time.Second), s.FirstOfferP99.Round(time.Second), s.DecisionP99.Round(time.Microsecond))
	}
}

// WriteComparison writes, for every load and policy, its change against the baseline of that load in
// late-or-unassignable tasks and in kilometres per delivery (negative is better).
func WriteComparison(w io.Writer, sums []Summary) {
	base := map[string]Summary{}
	for _, s := range sums {
		if s.Policy == (Baseline{}).Name() {
			base[s.Load] = s
		}
	}
	for _, e := range sums {
		b, ok := base[e.Load]
		if !ok || e.Policy == b.Policy {
			continue
		}
		fmt.Fprintf(w, "- %s, %s against the baseline: late or unassignable %+.1f %%, km per delivery %+.1f %%, on-time rate %+.1f points, deliveries per courier-hour %+.1f %%\n",
			e.Load, e.Policy, change(e.LateRate, b.LateRate), change(e.KMPerDelivery, b.KMPerDelivery), 100*(e.OnTimeRate-b.OnTimeRate), change(e.PerCourierHour, b.PerCourierHour))
	}
}

// change is the relative change from base to v in percent.
func change(v, base float64) float64 {
	if base == 0 {
		return 0
	}
	return 100 * (v - base) / base
}
