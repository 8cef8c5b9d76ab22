package promapi

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// FuzzParseExpr feeds any text to the bounded parser, as the query API
// does: it must not panic, must refuse what is past the bounds, and its
// estimate of the depth before parsing must never be below the depth of
// what the parser builds. The seeds run with `go test`; `make fuzz` runs
// the fuzzer.
func FuzzParseExpr(f *testing.F) {
	for _, q := range ordinary {
		f.Add(q)
	}
	for _, q := range []string{
		"1" + strings.Repeat("+1", 300), strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300),
		`a{b="c\"}"} or d`, "`raw ) ( string` + x", "x # comment\n+ y", "-(-(-(x)))", "sum(x)[5m:1m] offset 1h @ start()",
		`{"ü.name"} / on("é") {__name__="x"}`, "x[5m + 1m * 2]", "((", "))", "\"unterminated", "#",
	} {
		f.Add(q)
	}
	cfg := DefaultConfig()
	cfg.MaxDepth = 50
	cfg.MaxLength = 4096
	bounded := NewParser(cfg)
	plain := parser.NewParser(ParserOptions(cfg))
	f.Fuzz(func(t *testing.T, q string) {
		expr, err := bounded.ParseExpr(q)
		if err == nil && exprDepth(expr, cfg.MaxDepth) > cfg.MaxDepth {
			t.Fatalf("accepted %q, deeper than max_depth %d", q, cfg.MaxDepth)
		}
		if len(q) > cfg.MaxLength {
			if err == nil {
				t.Fatalf("accepted %d bytes, more than max_length %d", len(q), cfg.MaxLength)
			}
			return
		}
		if expr, err := plain.ParseExpr(q); err == nil {
			if exact, bound := exprDepth(expr, 1<<30), depthBound(q); bound < exact {
				t.Fatalf("%q: depthBound %d below the true depth %d", q, bound, exact)
			}
		}
		bounded.ParseMetricSelector(q)
	})
}
