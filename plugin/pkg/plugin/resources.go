package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// CallResource serves the query editor's look-ups:
//
//	services            the services with spans (Jaeger API)
//	operations?service= the span names of a service
//	labels              the label names of the stored series
//	label-values?label= the values of a label
//	runbooks            the runbooks that ran for recent incidents
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	u, err := url.Parse(req.URL)
	if err != nil {
		return sendJSON(sender, http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
	q := u.Query()
	var out any
	switch strings.Trim(req.Path, "/") {
	case "services":
		var res struct {
			Data []string `json:"data"`
		}
		err, out = d.client.get(ctx, "/api/services", nil, &res), &res.Data
	case "operations":
		var res struct {
			Data []string `json:"data"`
		}
		err, out = d.client.get(ctx, "/api/services/"+url.PathEscape(q.Get("service"))+"/operations", nil, &res), &res.Data
	case "labels":
		var res struct {
			Data []string `json:"data"`
		}
		err, out = d.client.get(ctx, "/api/v1/labels", nil, &res), &res.Data
	case "label-values":
		label := q.Get("label")
		if label == "" {
			return sendJSON(sender, http.StatusBadRequest, map[string]string{"error": "label: missing"})
		}
		var res struct {
			Data []string `json:"data"`
		}
		err, out = d.client.get(ctx, "/api/v1/label/"+url.PathEscape(label)+"/values", nil, &res), &res.Data
	case "runbooks":
		var page struct {
			Incidents []incident `json:"incidents"`
		}
		err = d.client.get(ctx, "/api/v1/incidents", url.Values{"limit": {"1000"}}, &page)
		seen := map[string]bool{}
		books := []string{}
		for _, inc := range page.Incidents {
			for _, r := range inc.Runbooks {
				if !seen[r.Runbook] {
					seen[r.Runbook] = true
					books = append(books, r.Runbook)
				}
			}
		}
		out = books
	default:
		return sendJSON(sender, http.StatusNotFound, map[string]string{"error": "no such resource: " + req.Path})
	}
	if err != nil {
		status := http.StatusBadGateway
		if se, ok := err.(*statusError); ok {
			status = se.Status
		}
		return sendJSON(sender, status, map[string]string{"error": err.Error()})
	}
	return sendJSON(sender, http.StatusOK, out)
}

func sendJSON(sender backend.CallResourceResponseSender, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sender.Send(&backend.CallResourceResponse{Status: status,
		Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b})
}
