package runbook

import _ "embed"

// Schema is the JSON Schema of runbook files (draft 2020-12), for
// editors: point yaml-language-server at remediation/runbook/runbook.schema.json.
// Lint checks more than a schema can (PromQL, matchers, templates, safety).
//
//go:embed runbook.schema.json
var Schema []byte
