package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"lastmile/internal/platform/admin"
	"lastmile/internal/platform/telemetry"
)

func Example() {
	srv, err := admin.New(admin.Config{
		Addr:     "127.0.0.1:0", // lastmile uses --admin-addr, :9091 by default
		Registry: telemetry.NewRegistry(),
		Ready: func(ctx context.Context) error {
			// Caller-safe text only: it is the /readyz body.
			return errors.New("database unreachable")
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := client.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			fmt.Println(err)
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode, string(body))
	}

	cancel()
	fmt.Println("serve:", <-done)
	// Output:
	// /healthz 200 ok
	// /readyz 503 database unreachable
	// serve: <nil>
}
