package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/api/auth"
)

// tokenCommands manage API tokens directly in the store, so they work
// before the server has ever run and while it runs (the server picks new
// tokens and revocations up within seconds).
type tokenCommands struct {
	create, list, revoke *kingpin.CmdClause
	store                storeFlags

	name   string
	scopes string
	tenant string
	ttl    model.Duration
	id     string
}

func newTokenCommands(app *kingpin.Application) []command {
	c := &tokenCommands{}
	tok := app.Command("token", "Manage API tokens.")
	c.create = tok.Command("create", "Create an API token and print it. The token is shown once; only its hash is stored.")
	c.create.Flag("name", "Who or what the token is for, e.g. grafana.").Required().StringVar(&c.name)
	c.create.Flag("scopes", "Comma-separated scopes: read, write, admin (each implies the ones before it); execute (run runbooks, cancel runs, engage the kill switch) and approve (approve or deny runs), which imply read; ingest (send OTLP data only). Admin implies every scope.").Default("read").StringVar(&c.scopes)
	c.create.Flag("tenant", "Tenant of an ingest token: set as the tenant label on everything it sends, counted against collector.limits.max_series_per_tenant.").StringVar(&c.tenant)
	c.create.Flag("ttl", "Lifetime, e.g. 90d; 0 never expires.").Default("0s").SetValue(&c.ttl)
	c.list = tok.Command("list", "List API tokens (never their secrets).")
	c.revoke = tok.Command("revoke", "Revoke an API token by id.")
	c.revoke.Arg("id", "Token id, as printed by token create and token list.").Required().StringVar(&c.id)
	for _, cmd := range []*kingpin.CmdClause{c.create, c.list, c.revoke} {
		c.store.register(cmd)
	}
	return []command{
		commandFunc{c.create, c.runCreate},
		commandFunc{c.list, c.runList},
		commandFunc{c.revoke, c.runRevoke},
	}
}

func (c *tokenCommands) tokenStore(ctx context.Context) (*auth.TokenStore, func(), error) {
	events, closeFn, err := c.store.openEvents(ctx)
	if err != nil {
		return nil, nil, err
	}
	return auth.NewTokenStore(events, slog.New(slog.DiscardHandler)), closeFn, nil
}

func (c *tokenCommands) runCreate(ctx context.Context, stdout, _ io.Writer) error {
	scopes, err := auth.ParseScopes(c.scopes)
	if err != nil {
		return fmt.Errorf("--scopes: %w", err)
	}
	ts, closeFn, err := c.tokenStore(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := auth.ValidTenant(c.tenant); err != nil {
		return fmt.Errorf("--tenant: %w", err)
	}
	secret, tok, err := ts.CreateToken(ctx, auth.Token{Name: c.name, Scopes: scopes, Tenant: c.tenant}, time.Duration(c.ttl), "cli")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	tenant := ""
	if tok.Tenant != "" {
		tenant = ", tenant " + tok.Tenant
	}
	fmt.Fprintf(stdout, "# id %s, scopes %v%s; store the token now, it is not shown again\n", tok.ID, tok.Scopes, tenant)
	return nil
}

func (c *tokenCommands) runList(ctx context.Context, stdout, _ io.Writer) error {
	ts, closeFn, err := c.tokenStore(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	toks, err := ts.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tTENANT\tCREATED\tEXPIRES\tREVOKED")
	for _, t := range toks {
		tenant := t.Tenant
		if tenant == "" {
			tenant = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Scopes, tenant, fmtTime(t.CreatedAt), fmtTime(t.ExpiresAt), fmtTime(t.RevokedAt))
	}
	return tw.Flush()
}

func (c *tokenCommands) runRevoke(ctx context.Context, stdout, _ io.Writer) error {
	ts, closeFn, err := c.tokenStore(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := ts.Revoke(ctx, c.id, "cli"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s\n", c.id)
	return nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
