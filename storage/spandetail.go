package storage

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// spanDetails is what a span carries beyond the columns every query
// filters or sorts on: both stores keep it as one JSON text, since it is
// only ever read back whole.
type spanDetails struct {
	ScopeVersion           string               `json:"sv,omitempty"`
	TraceState             string               `json:"ts,omitempty"`
	Events                 []SpanEvent          `json:"ev,omitempty"`
	Links                  []SpanLink           `json:"ln,omitempty"`
	AttributeTypes         map[string]ValueType `json:"at,omitempty"`
	ResourceAttributeTypes map[string]ValueType `json:"rt,omitempty"`
}

// EncodeSpanDetails returns the JSON text of the span's scope version,
// trace state, events, links and attribute types, "{}" when it has none.
func EncodeSpanDetails(s *Span) string {
	d := spanDetails{
		ScopeVersion:           s.ScopeVersion,
		TraceState:             s.TraceState,
		Events:                 s.Events,
		Links:                  s.Links,
		AttributeTypes:         s.AttributeTypes,
		ResourceAttributeTypes: s.ResourceAttributeTypes,
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Strings, times and maps of strings always marshal.
		panic(err)
	}
	return string(b)
}

// DecodeSpanDetails sets the fields EncodeSpanDetails encoded. An empty
// text (a span stored before details were kept) sets nothing.
func DecodeSpanDetails(text string, s *Span) error {
	if text == "" || text == "{}" {
		return nil
	}
	var d spanDetails
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		return fmt.Errorf("span %s/%s details: %w", s.TraceID, s.SpanID, err)
	}
	s.ScopeVersion, s.TraceState = d.ScopeVersion, d.TraceState
	s.Events, s.Links = d.Events, d.Links
	s.AttributeTypes, s.ResourceAttributeTypes = d.AttributeTypes, d.ResourceAttributeTypes
	for i := range s.Events {
		s.Events[i].Time = s.Events[i].Time.UTC()
	}
	return nil
}

// EventAttributes flattens the attributes of the span's events into
// parallel key and value lists (a key may repeat), for stores that search
// them.
func (s *Span) EventAttributes() (keys, values []string) {
	keys, values = []string{}, []string{}
	for _, e := range s.Events {
		for _, k := range slices.Sorted(maps.Keys(e.Attributes)) {
			keys = append(keys, k)
			values = append(values, e.Attributes[k])
		}
	}
	return keys, values
}
