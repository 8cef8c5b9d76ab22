package limits

import (
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
)

// CheckLabels checks a series' label set as Prometheus checks a scraped
// series against label_limit, label_name_length_limit and
// label_value_length_limit: the count includes __name__, whose value is
// held to MetricNameLengthLimit instead of LabelValueLengthLimit. Names
// and values must be valid UTF-8. It returns the zero Violation when the
// labels pass.
func (c Config) CheckLabels(ls labels.Labels) Violation {
	if c.LabelLimit > 0 {
		if n := ls.Len(); n > c.LabelLimit {
			return Violation{Reason: LabelLimit, Metric: ls.Get(labels.MetricName), Where: "label", Got: n, Limit: c.LabelLimit}
		}
	}
	var v Violation
	ls.Range(func(l labels.Label) {
		switch {
		case v.Reason != "":
		case !utf8.ValidString(l.Name):
			v = Violation{Reason: InvalidUTF8, Where: "label name", Name: l.Name}
		case !utf8.ValidString(l.Value):
			v = Violation{Reason: InvalidUTF8, Where: "value of label", Name: l.Name}
		case c.LabelNameLengthLimit > 0 && len(l.Name) > c.LabelNameLengthLimit:
			v = Violation{Reason: LabelNameLength, Where: "label", Name: l.Name, Got: len(l.Name), Limit: c.LabelNameLengthLimit}
		case l.Name == labels.MetricName:
			if c.MetricNameLengthLimit > 0 && len(l.Value) > c.MetricNameLengthLimit {
				v = Violation{Reason: MetricNameLength, Metric: l.Value, Got: len(l.Value), Limit: c.MetricNameLengthLimit}
			}
		case c.LabelValueLengthLimit > 0 && len(l.Value) > c.LabelValueLengthLimit:
			v = Violation{Reason: LabelValueLength, Where: "label", Name: l.Name, Got: len(l.Value), Limit: c.LabelValueLengthLimit}
		}
	})
	if v.Reason != "" && v.Metric == "" {
		v.Metric = ls.Get(labels.MetricName)
	}
	return v
}
