package database_test

import (
	"strings"
	"testing"

	"lastmile/internal/platform/database"
)

func TestDialectOf(t *testing.T) {
	tests := []struct {
		url  string
		want database.Dialect
	}{
		{"", database.SQLite},
		{"sqlite:", database.SQLite},
		{"sqlite:/var/lib/lastmile/dispatch.db", database.SQLite},
		{"sqlite:///var/lib/lastmile/dispatch.db", database.SQLite},
		{"SQLite:data/x.db", database.SQLite},
		{"/var/lib/lastmile/dispatch.db", database.SQLite},
		{"data/dispatch.db", database.SQLite},
		{"dispatch.db", database.SQLite},
		{"./a:b.db", database.SQLite},
		{`C:\lastmile\dispatch.db`, database.SQLite},
		{"postgres://lastmile:pw@db:5432/lastmile?sslmode=verify-full", database.Postgres},
		{"postgresql://db/lastmile", database.Postgres},
		{"POSTGRES://db/lastmile", database.Postgres},
	}
	for _, tt := range tests {
		got, err := database.DialectOf(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("DialectOf(%q) = %q, %v, want %q, nil", tt.url, got, err, tt.want)
		}
	}
}

func TestDialectOfRejects(t *testing.T) {
	for _, u := range []string{
		"mysql://root:hunter2@db/lastmile",
		"http://example.com/db",
		"localhost:5432",
		"postgres:db",
		"file:dispatch.db",
	} {
		got, err := database.DialectOf(u)
		if err == nil {
			t.Errorf("DialectOf(%q) = %q, nil, want an error", u, got)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("DialectOf(%q) error %q shows the password", u, err)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	tests := []struct{ url, want string }{
		{"", ""},
		{"sqlite:", ""},
		{"sqlite:/var/lib/x.db", "/var/lib/x.db"},
		{"sqlite:///var/lib/x.db", "/var/lib/x.db"},
		{"sqlite:data/x.db", "data/x.db"},
		{"/var/lib/x.db", "/var/lib/x.db"},
	}
	for _, tt := range tests {
		got, err := database.SQLitePath(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("SQLitePath(%q) = %q, %v, want %q, nil", tt.url, got, err, tt.want)
		}
	}
	if got, err := database.SQLitePath("postgres://db/x"); err == nil {
		t.Errorf("SQLitePath(postgres://db/x) = %q, nil, want an error", got)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://lastmile:s3cret@db:5432/lastmile?sslmode=disable", "postgres://lastmile:xxxxx@db:5432/lastmile?sslmode=disable"},
		{"postgres://lastmile@db/lastmile", "postgres://lastmile@db/lastmile"},
		{"postgres://db/lastmile?password=s3cret&sslmode=disable", "postgres://db/lastmile?password=xxxxx&sslmode=disable"},
		{"postgres://u@db/x?sslpassword=s3cret", "postgres://u@db/x?sslpassword=xxxxx"},
		{"postgres://u:p%zzs3cret@db/x", "postgres://u:xxxxx@db/x"},
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"host=db password='s3 cret' dbname=x", "host=db password=xxxxx dbname=x"},
		{"/var/lib/x.db", "/var/lib/x.db"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := database.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestContainsPattern(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ada", `%ada%`},
		{"100%", `%100\%%`},
		{"a_b", `%a\_b%`},
		{`back\slash`, `%back\\slash%`},
		{"", `%%`},
	}
	for _, tt := range tests {
		if got := database.ContainsPattern(tt.in); got != tt.want {
			t.Errorf("ContainsPattern(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
