// Command gpx_aiops is the backend of the aiops Grafana data source.
// Grafana starts it and talks to it over gRPC (hashicorp/go-plugin); it
// talks to aiops over aiops's HTTP APIs only.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/aiops-dev/aiops/plugin/pkg/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("aiops data source stopped", "err", err)
		os.Exit(1)
	}
}
