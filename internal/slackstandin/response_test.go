package slackstandin

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"
)

// TestResponseURL: a response URL takes a JSON message as Slack's does,
// refuses one that is not, and an image block naming a file that was
// never uploaded.
func TestResponseURL(t *testing.T) {
	s := New("xoxb-t")
	defer s.Stop()
	ctx := context.Background()
	api := slack.New("xoxb-t", slack.OptionAPIURL(s.URL()))
	png := []byte("\x89PNG fake")
	f, err := api.UploadFileContext(ctx, slack.UploadFileParameters{Reader: bytes.NewReader(png), FileSize: len(png), Filename: "c.png", Title: "c"})
	if err != nil {
		t.Fatal(err)
	}
	post := func(msg *slack.WebhookMessage) error {
		return slack.PostWebhookContext(ctx, s.ResponseURL("u1"), msg)
	}
	img := func(id string) *slack.Blocks {
		return &slack.Blocks{BlockSet: []slack.Block{slack.NewImageBlockSlackFile(&slack.SlackFileObject{ID: id}, "alt", "", nil)}}
	}
	if err := post(&slack.WebhookMessage{ResponseType: "ephemeral", Text: "hi", Blocks: img(f.ID)}); err != nil {
		t.Fatal(err)
	}
	if err := post(&slack.WebhookMessage{Text: "hi", Blocks: img("F-NEVER")}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("unknown file: %v", err)
	}
	resp, err := http.Post(s.ResponseURL("u1"), "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("not JSON: %d", resp.StatusCode)
	}
	rs := s.Responses()
	if len(rs) != 1 || rs[0].Name != "u1" || rs[0].Message.Text != "hi" || rs[0].Message.ResponseType != "ephemeral" {
		t.Fatalf("responses %+v", rs)
	}
	if fs := s.Files(); len(fs) != 1 || fs[0].Channel != "" || !bytes.Equal(fs[0].Content, png) {
		t.Fatalf("files %+v", fs)
	}
}
