package results

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/storage"
)

// AnomalyKind is the storage.Event Kind of anomaly events. Read them with
// EventQuery.KindPrefix = AnomalyKind and keep the events whose Kind is
// exactly AnomalyKind: the prefix also matches longer kinds.
const AnomalyKind = "anomaly"

// Anomaly is the payload of an anomaly event: one analysed sample that
// scored at least the analyzer's event threshold.
type Anomaly struct {
	// Series is the analysed series, metric name included.
	Series map[string]string `json:"series"`
	Time   time.Time         `json:"time"`
	Score  float64           `json:"score"`
	Value  float64           `json:"value"`
	// Expected, Lower and Upper are the detector's prediction and the
	// range it considered normal; nil (null) when it had none.
	Expected *float64 `json:"expected,omitempty"`
	Lower    *float64 `json:"lower,omitempty"`
	Upper    *float64 `json:"upper,omitempty"`
	// Surprise is -log10 of the estimated probability of the deviation.
	Surprise float64 `json:"surprise"`
}

// EncodeAnomaly wraps an anomaly as a storage event. The event's ID
// depends only on the series and the sample time, so encoding the same
// anomaly again (the analyzer scoring a sample again after a restart
// without state) stores nothing new. Its Subject is the series' label
// hash, its Labels the series.
func EncodeAnomaly(an Anomaly) (storage.Event, error) {
	payload, err := json.Marshal(an)
	if err != nil {
		return storage.Event{}, fmt.Errorf("encode anomaly: %w", err)
	}
	lset := labels.FromMap(an.Series)
	sum := sha256.Sum256([]byte(lset.String() + "@" + an.Time.UTC().Format(time.RFC3339Nano)))
	return storage.Event{
		ID:      "anomaly-" + hex.EncodeToString(sum[:12]),
		Time:    an.Time,
		Kind:    AnomalyKind,
		Subject: fmt.Sprintf("%016x", lset.Hash()),
		Labels:  maps.Clone(an.Series),
		Payload: payload,
	}, nil
}

// DecodeAnomaly reads an anomaly event.
func DecodeAnomaly(ev storage.Event) (Anomaly, error) {
	if ev.Kind != AnomalyKind {
		return Anomaly{}, fmt.Errorf("event %s: kind %q is not %q", ev.ID, ev.Kind, AnomalyKind)
	}
	var a Anomaly
	if err := json.Unmarshal(ev.Payload, &a); err != nil {
		return Anomaly{}, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	return a, nil
}
