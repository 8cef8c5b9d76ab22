package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// TestRulesDoNotWaitForQuerySlots fills every slot of the query API's
// engine with queries that hold them, from three tokens; rule expressions
// are still evaluated, and another API query waits.
func TestRulesDoNotWaitForQuerySlots(t *testing.T) {
	cfg := promapi.DefaultConfig()
	api, rules, err := newQueryEngines(cfg, testutil.Discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	defer rules.Close()
	store := storetest.NewBlocking(storetest.Embedded(t), "block_me")
	defer store.Release()

	exec := func(ng *promapi.Engine, principal, q string) error {
		ctx := context.Background()
		if principal != "" {
			ctx = auth.WithPrincipal(ctx, auth.Principal{ID: principal})
		}
		qry, err := ng.NewInstantQuery(ctx, store, nil, q, time.Unix(1700000000, 0))
		if err != nil {
			return err
		}
		defer qry.Close()
		return qry.Exec(ctx).Err
	}
	done := make(chan error, cfg.MaxConcurrency+1)
	for i := range cfg.MaxConcurrency {
		go func() { done <- exec(api, fmt.Sprintf("token-%d", i%3), "sum(block_me)") }()
	}
	testutil.WaitFor(t, "every query slot taken", 30*time.Second, func() bool { return store.Waiting() == cfg.MaxConcurrency })
	go func() { done <- exec(api, "token-late", "vector(1)") }()

	if err := exec(rules, "", "sum(vector(1))"); err != nil {
		t.Errorf("rule expression while the query API is full: %v", err)
	}
	if len(done) != 0 {
		t.Fatalf("a query finished while every slot was held")
	}
	store.Release()
	for range cfg.MaxConcurrency + 1 {
		if err := <-done; err != nil {
			t.Errorf("API query after release: %v", err)
		}
	}
}
