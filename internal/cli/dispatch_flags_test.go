package cli

import (
	"testing"

	"lastmile/internal/dispatch"
)

func TestParseWeights(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want dispatch.Weights
	}{
		{"", dispatch.DefaultWeights},
		{formatWeights(dispatch.DefaultWeights), dispatch.DefaultWeights},
		{"eta=2", dispatch.Weights{ETA: 2, Distance: 0.25, Load: 0.5, Fairness: 0.2}},
		{" ETA = 0 , fairness=1.5,", dispatch.Weights{ETA: 0, Distance: 0.25, Load: 0.5, Fairness: 1.5}},
		{"eta=0,distance=0,load=0,fairness=100", dispatch.Weights{Fairness: 100}},
	} {
		got, err := parseWeights(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWeights(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for in, want := range map[string]string{
		"speed=1":                            `"speed=1": want name=value with a name of eta, distance, load, fairness`,
		"eta":                                `"eta": want name=value with a name of eta, distance, load, fairness`,
		"eta=1,eta=2":                        "eta is given twice",
		"load=-1":                            "load=-1: want a number from 0 to 100",
		"load=NaN":                           "load=NaN: want a number from 0 to 100",
		"load=101":                           "load=101: want a number from 0 to 100",
		"eta=0,distance=0,load=0,fairness=0": "at least one weight must be positive",
	} {
		if _, err := parseWeights(in); err == nil || err.Error() != want {
			t.Errorf("parseWeights(%q) = %v, want %q", in, err, want)
		}
	}
	if got, want := formatWeights(dispatch.DefaultWeights), "eta=1,distance=0.25,load=0.5,fairness=0.2"; got != want {
		t.Errorf("formatWeights(default) = %q, want %q", got, want)
	}
}
