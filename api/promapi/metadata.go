package promapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/grafana/regexp"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/util/httputil"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/aiops-dev/aiops/storage"
)

// MetadataSource gives the metric metadata (type, help, unit) that arrived
// with the samples, e.g. from OTLP through AppendV2Options.Metadata and
// MetricFamilyName. Prometheus serves /api/v1/metadata from its scrape
// targets; aiops has none, so the store answers instead.
type MetadataSource interface {
	// MetricMetadata returns the distinct metadata recorded per metric
	// family name. A non-empty metric selects that one family. limit > 0
	// caps how many families are returned; it is a hint to save work, the
	// API enforces it (and limit_per_metric) on whatever is returned.
	MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error)
}

// metadataHandler serves GET /api/v1/metadata as Prometheus does: the same
// parameters, validation messages, response shape and limit semantics.
func metadataHandler(src MetadataSource, cors *regexp.Regexp, logger *slog.Logger) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httputil.SetCORS(w, cors, r)

		limit := -1
		if s := r.FormValue("limit"); s != "" {
			var err error
			if limit, err = strconv.Atoi(s); err != nil {
				writeResponse(w, http.StatusBadRequest, errorResponse("bad_data", "limit must be a number"), logger)
				return
			}
		}
		limitPerMetric := -1
		if s := r.FormValue("limit_per_metric"); s != "" {
			var err error
			if limitPerMetric, err = strconv.Atoi(s); err != nil {
				writeResponse(w, http.StatusBadRequest, errorResponse("bad_data", "limit_per_metric must be a number"), logger)
				return
			}
		}

		res := map[string][]metadata.Metadata{}
		// Prometheus stops adding families once it holds limit of them, so
		// limit=0 returns none; a negative limit means no limit.
		if src != nil && limit != 0 {
			found, err := src.MetricMetadata(r.Context(), r.FormValue("metric"), max(limit, 0))
			if err != nil {
				// Prometheus reports a store that is not ready as
				// "unavailable" and anything else as "internal", both 500.
				typ := "internal"
				if errors.Is(err, storage.ErrUnavailable) {
					typ = "unavailable"
				}
				writeResponse(w, http.StatusInternalServerError, errorResponse(typ, err.Error()), logger)
				return
			}
			res = trimMetadata(found, r.FormValue("metric"), limit, limitPerMetric)
		}

		resp := &v1.Response{Status: "success", Data: res}
		writeResponse(w, http.StatusOK, resp, logger)
	})
	return httputil.CompressionHandler{Handler: h}
}

// trimMetadata applies Prometheus's semantics to what a source returned:
// only the asked-for family, distinct entries, at most limitPerMetric
// entries per family when it is > 0 and at most limit families when it is
// >= 0. Families are kept in name order so that a limit cuts the same
// ones every time.
func trimMetadata(found map[string][]metadata.Metadata, metric string, limit, limitPerMetric int) map[string][]metadata.Metadata {
	names := make([]string, 0, len(found))
	for name := range found {
		if metric == "" || name == metric {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	res := map[string][]metadata.Metadata{}
	for _, name := range names {
		if limit >= 0 && len(res) >= limit {
			break
		}
		var entries []metadata.Metadata
		for _, m := range found[name] {
			if limitPerMetric > 0 && len(entries) >= limitPerMetric {
				break
			}
			if !slices.Contains(entries, m) {
				entries = append(entries, m)
			}
		}
		if len(entries) > 0 {
			res[name] = entries
		}
	}
	return res
}

func errorResponse(typ, msg string) *v1.Response {
	return &v1.Response{Status: "error", ErrorType: typ, Error: msg}
}

// writeResponse encodes with Prometheus's JSON codec, so that the bytes
// match what its own handlers write.
func writeResponse(w http.ResponseWriter, code int, resp *v1.Response, logger *slog.Logger) {
	b, err := v1.JSONCodec{}.Encode(resp)
	if err != nil {
		logger.Error("Encode metadata response", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if _, err := w.Write(b); err != nil {
		logger.Debug("Write metadata response", "err", err)
	}
}
