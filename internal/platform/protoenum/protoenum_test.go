package protoenum_test

import (
	"testing"

	"lastmile/internal/platform/protoenum"
)

type color string

type colorProto int32

var colors = protoenum.New(map[color]colorProto{"red": 1, "blue": 2})

func TestDecode(t *testing.T) {
	for _, tt := range []struct {
		in   colorProto
		want color
	}{{0, ""}, {1, "red"}, {2, "blue"}, {7, "undefined(7)"}, {-1, "undefined(-1)"}} {
		if got := colors.Decode(tt.in); got != tt.want {
			t.Errorf("Decode(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEncode(t *testing.T) {
	for _, tt := range []struct {
		in   color
		want colorProto
	}{{"", 0}, {"red", 1}, {"blue", 2}, {"green", 0}, {"undefined(7)", 0}} {
		if got := colors.Encode(tt.in); got != tt.want {
			t.Errorf("Encode(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestNewRefusesBadPairs(t *testing.T) {
	for name, pairs := range map[string]map[color]colorProto{
		"empty value":       {"": 1},
		"unspecified":       {"red": 0},
		"one number, twice": {"red": 1, "blue": 1},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v) did not panic", pairs)
				}
			}()
			protoenum.New(pairs)
		})
	}
}
