package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"lastmile/internal/dispatch"
)

// weightNames are --dispatch-weights' names, in the order formatWeights writes them.
var weightNames = []string{"eta", "distance", "load", "fairness"}

func weightField(w *dispatch.Weights, name string) *float64 {
	switch name {
	case "eta":
		return &w.ETA
	case "distance":
		return &w.Distance
	case "load":
		return &w.Load
	case "fairness":
		return &w.Fairness
	}
	return nil
}

// maxWeight bounds each --dispatch-weights value.
const maxWeight = 100

// parseWeights parses --dispatch-weights, such as "eta=1,distance=0.25,load=0.5,fairness=0.2": each weight
// from 0 to 100, at least one positive; names left out keep their default.
func parseWeights(s string) (dispatch.Weights, error) {
	w := dispatch.DefaultWeights
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		f := weightField(&w, name)
		if !ok || f == nil {
			return w, fmt.Errorf("%q: want name=value with a name of %s", part, strings.Join(weightNames, ", "))
		}
		if seen[name] {
			return w, fmt.Errorf("%s is given twice", name)
		}
		seen[name] = true
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || !(v >= 0 && v <= maxWeight) {
			return w, fmt.Errorf("%s=%s: want a number from 0 to %d", name, strings.TrimSpace(value), maxWeight)
		}
		*f = v
	}
	if w == (dispatch.Weights{}) {
		return w, errors.New("at least one weight must be positive")
	}
	return w, nil
}

// formatWeights writes w as --dispatch-weights takes it.
func formatWeights(w dispatch.Weights) string {
	parts := make([]string, len(weightNames))
	for i, n := range weightNames {
		parts[i] = n + "=" + strconv.FormatFloat(*weightField(&w, n), 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}
