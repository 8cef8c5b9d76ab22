// Command slack-standin runs the Slack Web API stand-in for manual
// tests: it prints its API URL (for slack.api_url) and serves until
// interrupted. GET /_standin/messages lists what was posted;
// /_standin/fault?method=…&status=429&retry_after=3&times=2 injects
// faults.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/aiops-dev/aiops/internal/slackstandin"
)

func main() {
	token := flag.String("token", "xoxb-standin", "bot token the stand-in accepts")
	flag.Parse()
	s := slackstandin.New(*token)
	defer s.Stop()
	fmt.Println(s.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
}
