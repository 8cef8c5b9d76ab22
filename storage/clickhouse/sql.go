package clickhouse

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// quote renders s as a ClickHouse string literal. Backslash is the escape
// character in ClickHouse literals, so it is escaped along with the quote;
// NUL and newlines are escaped to keep statements printable.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// quoteIdent renders an identifier in backquotes.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "`", "\\`") + "`"
}

func unquoteIdent(s string) string {
	s = strings.TrimPrefix(strings.TrimSuffix(s, "`"), "`")
	return strings.ReplaceAll(strings.ReplaceAll(s, "\\`", "`"), `\\`, `\`)
}

// likePrefix renders a LIKE pattern matching strings that start with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return quote(r.Replace(p) + "%")
}

// labelExpr is the SQL expression for a label's value in metric_series:
// the metric name column, or the value array element, which is ” when
// the label is absent (indexOf yields 0 and element 0 of an array is the
// default value).
func labelExpr(name string) string {
	if name == model.MetricNameLabel {
		return "metric_name"
	}
	return "label_values[indexOf(label_names, " + quote(name) + ")]"
}

// anchoredRegex anchors a matcher's regular expression the way Prometheus
// does (labels.NewFastRegexMatcher): the whole value must match, and "."
// also matches a newline. ClickHouse's match() uses RE2 like Go's regexp.
func anchoredRegex(re string) string {
	return "^(?s:" + re + ")$"
}

// matcherSQL renders one matcher as a condition on metric_series. With
// withRegex false, regular expression matchers are left out (they are
// checked in Go on the returned labels), for servers whose RE2 rejects an
// expression Go accepts.
func matcherSQL(m *labels.Matcher, withRegex bool) (string, bool) {
	e := labelExpr(m.Name)
	switch m.Type {
	case labels.MatchEqual:
		return e + " = " + quote(m.Value), true
	case labels.MatchNotEqual:
		return e + " != " + quote(m.Value), true
	case labels.MatchRegexp, labels.MatchNotRegexp:
		not := m.Type == labels.MatchNotRegexp
		// A regex that is a plain set of literals ("a|b|c") becomes IN,
		// which ClickHouse can answer from the primary key for the
		// metric name.
		if set := m.SetMatches(); len(set) > 0 {
			vals := make([]string, len(set))
			for i, v := range set {
				vals[i] = quote(v)
			}
			op := " IN "
			if not {
				op = " NOT IN "
			}
			return e + op + "(" + strings.Join(vals, ", ") + ")", true
		}
		if !withRegex {
			return "", false
		}
		cond := "match(" + e + ", " + quote(anchoredRegex(m.Value)) + ")"
		if not {
			return "NOT " + cond, true
		}
		// A literal prefix lets ClickHouse narrow the metric name range
		// by primary key before running the regex.
		if p := m.Prefix(); p != "" && m.Name == model.MetricNameLabel {
			cond = e + " LIKE " + likePrefix(p) + " AND " + cond
		}
		return cond, true
	}
	return "", false
}

// seriesConditions renders the WHERE clause of a metric_series query over
// the days [minDay, maxDay].
func seriesConditions(minDay, maxDay int32, matchers []*labels.Matcher, withRegex bool) string {
	conds := []string{fmt.Sprintf("day >= %d AND day <= %d", minDay, maxDay)}
	for _, m := range matchers {
		if c, ok := matcherSQL(m, withRegex); ok {
			conds = append(conds, "("+c+")")
		}
	}
	return strings.Join(conds, " AND ")
}

// matchesAll checks every matcher against a label set, with Prometheus's
// semantics. SQL pushdown narrows the candidates; this is the final word.
func matchesAll(ls labels.Labels, matchers []*labels.Matcher) bool {
	for _, m := range matchers {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

func sortInt64s(s []int64) { slices.Sort(s) }
