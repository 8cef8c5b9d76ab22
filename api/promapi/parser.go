package promapi

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/features"
)

// NewParser returns the PromQL parser for cfg: Prometheus's parser with
// ParserOptions(cfg), behind the bounds query.max_length and
// query.max_depth. Everything that parses PromQL from outside (the query
// API, the engine, rule files) must use it.
//
// The bounds exist because Prometheus's parser, type checker, evaluator,
// pretty printer and AST translator all recurse over the syntax tree, and
// some of them take time quadratic (or, for the pretty printer, cubic) in
// its depth: `1+1+…+1` with 100,000 terms overflows the evaluator's stack,
// and an 80 KB query to /api/v1/parse_query takes gigabytes. A query
// nobody writes by hand is refused before it reaches any of them.
func NewParser(cfg Config) parser.Parser {
	return &boundedParser{
		Parser:   parser.NewParser(ParserOptions(cfg)),
		maxLen:   cfg.MaxLength,
		maxDepth: cfg.MaxDepth,
	}
}

// boundedParser refuses expressions longer than maxLen bytes or nested
// deeper than maxDepth.
type boundedParser struct {
	parser.Parser
	maxLen, maxDepth int
}

// lexicalSlack is how much deeper than maxDepth the cheap estimate made
// before parsing may be. The estimate never undercounts, but it counts
// every operator inside a label matcher and every parenthesis, so it can
// exceed the true depth; the slack keeps it from refusing what the exact
// check after parsing would accept, while still keeping the parser's own
// quadratic type check small.
const lexicalSlack = 4

// ParseExpr implements parser.Parser.
func (p *boundedParser) ParseExpr(input string) (parser.Expr, error) {
	if err := p.checkLength(input); err != nil {
		return nil, err
	}
	if p.maxDepth > 0 && depthBound(input) > lexicalSlack*p.maxDepth {
		return nil, p.depthError()
	}
	expr, err := p.Parser.ParseExpr(input)
	if err != nil {
		return expr, err
	}
	if p.maxDepth > 0 && exprDepth(expr, p.maxDepth) > p.maxDepth {
		return nil, p.depthError()
	}
	return expr, nil
}

// ParseMetric implements parser.Parser.
func (p *boundedParser) ParseMetric(input string) (labels.Labels, error) {
	if err := p.checkLength(input); err != nil {
		return labels.EmptyLabels(), err
	}
	return p.Parser.ParseMetric(input)
}

// ParseMetricSelector implements parser.Parser. A selector has no depth
// to speak of: its matchers sit side by side.
func (p *boundedParser) ParseMetricSelector(input string) ([]*labels.Matcher, error) {
	if err := p.checkLength(input); err != nil {
		return nil, err
	}
	return p.Parser.ParseMetricSelector(input)
}

// ParseMetricSelectors implements parser.Parser.
func (p *boundedParser) ParseMetricSelectors(inputs []string) ([][]*labels.Matcher, error) {
	sets := make([][]*labels.Matcher, 0, len(inputs))
	for _, s := range inputs {
		ms, err := p.ParseMetricSelector(s)
		if err != nil {
			return nil, err
		}
		sets = append(sets, ms)
	}
	return sets, nil
}

// ParseSeriesDesc implements parser.Parser.
func (p *boundedParser) ParseSeriesDesc(input string) (labels.Labels, []parser.SequenceValue, error) {
	if err := p.checkLength(input); err != nil {
		return labels.EmptyLabels(), nil, err
	}
	return p.Parser.ParseSeriesDesc(input)
}

// RegisterFeatures implements parser.Parser.
func (p *boundedParser) RegisterFeatures(r features.Collector) { p.Parser.RegisterFeatures(r) }

func (p *boundedParser) checkLength(input string) error {
	if p.maxLen > 0 && len(input) > p.maxLen {
		return fmt.Errorf("query too long: %d bytes, at most %d allowed (query.max_length)", len(input), p.maxLen)
	}
	return nil
}

func (p *boundedParser) depthError() error {
	return fmt.Errorf("query nests too deeply: at most %d levels of operators, function calls, aggregations, parentheses and subqueries allowed (query.max_depth)", p.maxDepth)
}

// exprDepth returns the depth of the syntax tree under e, counting every
// expression node, or limit+1 as soon as it finds a path longer than limit.
// It walks with an explicit stack, not recursion.
func exprDepth(e parser.Node, limit int) int {
	type item struct {
		n     parser.Node
		depth int
	}
	deepest := 0
	stack := []item{{e, 1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.n == nil {
			continue
		}
		if it.depth > deepest {
			if deepest = it.depth; deepest > limit {
				return deepest
			}
		}
		for c := range parser.ChildrenIter(it.n) {
			d := it.depth + 1
			if _, ok := c.(parser.Expressions); ok {
				d = it.depth // a call's argument list is not a level of its own
			}
			stack = append(stack, item{c, d})
		}
	}
	return deepest
}

// depthBound returns, without parsing, a number no smaller than the depth
// of the syntax tree input would parse into. Each operator, opening
// bracket or set-operator keyword may add a level; commas separate
// arguments, which sit side by side. Text inside quotes and comments adds
// nothing. For input that does not lex, the bound may be anything: the
// parser stops at the first error and never builds that tree.
func depthBound(input string) int {
	// One frame per open bracket: the deepest bound among the arguments
	// closed so far, and the operators and deepest child of the current one.
	type frame struct{ best, ops, child int }
	stack := []frame{{}}
	closeArg := func(f *frame) {
		f.best = max(f.best, f.ops+f.child+1)
		f.ops, f.child = 0, 0
	}
	pop := func() {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		closeArg(&f)
		parent := &stack[len(stack)-1]
		parent.child = max(parent.child, f.best+1) // +1 for the bracket's own node
	}
	for i := 0; i < len(input); {
		c := input[i]
		top := &stack[len(stack)-1]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(input, i)
			continue
		case c == '#':
			if j := strings.IndexByte(input[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(input)
			}
			continue
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, frame{})
		case c == ')' || c == ']' || c == '}':
			if len(stack) > 1 {
				pop()
			}
		case c == ',':
			closeArg(top)
		case strings.IndexByte("+-*/%^=!<>@", c) >= 0:
			top.ops++
		case isWordByte(c) || c >= utf8.RuneSelf:
			j := i
			for j < len(input) && (isWordByte(input[j]) || input[j] >= utf8.RuneSelf) {
				j++
			}
			switch strings.ToLower(input[i:j]) {
			case "and", "or", "unless", "atan2":
				top.ops++
			}
			i = j
			continue
		}
		i++
	}
	for len(stack) > 1 {
		pop()
	}
	closeArg(&stack[0])
	return stack[0].best
}

func isWordByte(c byte) bool {
	return c == '_' || c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// skipString returns the index just past the string literal starting at
// input[i]. Backslash escapes count in quoted strings, not in raw ones.
func skipString(input string, i int) int {
	q := input[i]
	for j := i + 1; j < len(input); j++ {
		switch input[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1
		}
	}
	return len(input)
}
