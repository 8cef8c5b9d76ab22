// Command slack-standin runs the Slack Web API stand-in for manual
// tests: it prints its API URL (for slack.api_url) and serves until
// interrupted. GET /_standin/messages lists what was posted;
// /_standin/fault?method=…&status=429&retry_after=3&times=2 injects
// faults; POST /_standin/response/NAME is a response_url (on the
// api_url's host, so aiops follows it); POST
// /_standin/envelope?type=slash_commands sends a Socket Mode envelope,
// GET /_standin/envelope?ack=ID shows its acknowledgement.
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
	appToken := flag.String("app-token", "", "app-level token for Socket Mode (off when empty)")
	flag.Parse()
	s := slackstandin.New(*token)
	if *appToken != "" {
		s.EnableSocketMode(*appToken)
	}
	defer s.Stop()
	fmt.Println(s.URL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
}
