// Package slackapp is Slack's way into aiops: the slash command /aiops,
// the buttons on incident messages (alerting/slacknotify posts them) and
// the Events API, served under /slack/ on the main listener.
//
// Requests are authenticated by Slack's request signature, not by aiops
// bearer tokens: every request must carry a v0 HMAC of its raw body with
// the app's signing secret and a timestamp within 5 minutes, and a
// signature seen before is refused, so a forged, unsigned, stale or
// replayed request gets 401 and does nothing. The Slack user behind a
// verified request is then mapped to an aiops principal with scopes
// (Config.Users, UsersByEmail, DefaultScopes); what the principal has no
// scope for is refused and audited, as the REST API does.
package slackapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/api/auth"
)

// Incidents is the incident service the commands and buttons act
// through (*incident.Manager).
type Incidents interface {
	Get(id string) (incident.Incident, error)
	List(q incident.Query) ([]incident.Incident, *incident.Cursor)
	Timeline(ctx context.Context, id string) ([]incident.Event, error)
	Acknowledge(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	Resolve(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	Assign(ctx context.Context, id, assignee string, a incident.Action) (incident.Incident, error)
	AddNote(ctx context.Context, id, text string, a incident.Action) (incident.Incident, error)
	Escalate(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
}

// Silences creates silences (*incident.Silencer).
type Silences interface {
	SilenceIncident(ctx context.Context, id string, spec incident.SilenceSpec, a incident.Action) (incident.Incident, incident.Silence, error)
	CreateSilence(ctx context.Context, spec incident.SilenceSpec, actor string) (incident.Silence, error)
}

// QueryFunc evaluates an instant PromQL query at a time.
type QueryFunc func(ctx context.Context, expr string, at time.Time) (promql.Vector, error)

// Slack is what the app calls of Slack's Web API (*slack.Client).
type Slack interface {
	UserInfo
	// Uploader uploads the charts of /aiops query.
	slacknotify.Uploader
	PostEphemeralContext(ctx context.Context, channelID, userID string, options ...slack.MsgOption) (string, error)
	UpdateMessageContext(ctx context.Context, channelID, timestamp string, options ...slack.MsgOption) (string, string, string, error)
}

// Options are what the App runs on.
type Options struct {
	Config Config
	// SigningSecret verifies the HTTP endpoints' requests; Socket Mode
	// alone runs without it.
	SigningSecret slacknotify.Secret
	Incidents     Incidents
	Silences      Silences
	// Remediation is the remediation engine; nil means NoRemediation.
	Remediation Remediation
	// Query evaluates an instant PromQL query for /aiops query (as
	// Prometheus's rules.EngineQueryFunc does); nil turns the command off.
	Query QueryFunc
	// QueryRange evaluates a range query for the chart of /aiops query
	// (as the query API does); nil answers with the values alone.
	QueryRange slacknotify.QueryRangeFunc
	// Events, when set, puts the detector's normal range on the chart of
	// an anomaly score (storage.Store).
	Events slacknotify.EventQuerier
	// QueryTimeout bounds one /aiops query; 0 means 30s.
	QueryTimeout time.Duration
	// AckWithin is how long a command may take to be answered in its
	// acknowledgement; one that takes longer is answered through its
	// response_url. 0 means 2s: Slack waits 3 s, the network included.
	AckWithin time.Duration
	Slack     Slack
	// SharedSeen, in an HA pair, is the store's events: the replicas
	// share the signatures they accepted, so a request captured and sent
	// to the other replica (the new leader after a failover) is refused.
	SharedSeen SeenEvents
	// Auditor records actions and refusals; may be nil.
	Auditor    auth.Auditor
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// App serves the Slack endpoints.
type App struct {
	o      Options
	verify *verifier
	ids    *identities
	rem    Remediation
	logger *slog.Logger
	now    func() time.Time
	// hc posts answers to response URLs.
	hc        *http.Client
	ackWithin time.Duration

	refused  *prometheus.CounterVec
	commands *prometheus.CounterVec

	// background holds the ephemeral answers still being sent.
	background sync.WaitGroup

	logMu      sync.Mutex
	lastLog    time.Time
	unlogged   int
	eventsMu   sync.Mutex
	eventsSeen map[string]time.Time
}

// New builds the App.
func New(o Options) (*App, error) {
	if o.Incidents == nil || o.Silences == nil || o.Slack == nil {
		return nil, errors.New("slack app: Options.Incidents, Silences and Slack are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Remediation == nil {
		o.Remediation = NoRemediation{}
	}
	if o.AckWithin <= 0 {
		o.AckWithin = 2 * time.Second
	}
	a := &App{
		o: o, rem: o.Remediation, logger: o.Logger, now: o.Now, hc: newResponseClient(), ackWithin: o.AckWithin,
		ids:        newIdentities(o.Config, o.Slack, o.Now),
		eventsSeen: map[string]time.Time{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aiops_slack_requests_refused_total",
			Help: "Requests to /slack/ refused before anything was done, by reason (unsigned, forged, expired, replayed, too large).",
		}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aiops_slack_commands_total",
			Help: "Slack commands and button actions, by action and outcome (ok, error, forbidden).",
		}, []string{"action", "outcome"}),
	}
	if o.SigningSecret != "" {
		var path string
		if o.Config.StateDir != "" {
			path = filepath.Join(o.Config.StateDir, seenFile)
		}
		v, err := newVerifier(string(o.SigningSecret), time.Duration(o.Config.TimestampTolerance), o.Now, path)
		if err != nil {
			return nil, fmt.Errorf("slack app: %w", err)
		}
		v.shared = o.SharedSeen
		a.verify = v
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{a.refused, a.commands} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("slack app: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Paths of the endpoints.
const (
	PathCommands     = "/slack/commands"
	PathInteractions = "/slack/interactions"
	PathEvents       = "/slack/events"
)

// Mount adds the endpoints to mux. It needs Options.SigningSecret:
// without it nothing tells Slack's requests from anyone's.
func (a *App) Mount(mux *http.ServeMux) error {
	if a.verify == nil {
		return errors.New("slack app: the /slack/ endpoints need a signing secret (slack.signing_secret_file)")
	}
	mux.Handle("POST "+PathCommands, a.verified(a.serveCommand))
	mux.Handle("POST "+PathInteractions, a.verified(a.serveInteraction))
	mux.Handle("POST "+PathEvents, a.verified(a.serveEvent))
	return nil
}

// Close waits for the answers still being sent.
func (a *App) Close() {
	a.background.Wait()
	if a.verify != nil {
		a.verify.close()
	}
}

// verified reads the body, bounded, checks its signature and hands it
// on; anything else is refused with 401 (413 when too large) and
// nothing is done.
func (a *App) verified(next func(w http.ResponseWriter, r *http.Request, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.o.Config.MaxRequestBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				a.refuse(w, r, &refusal{reasonTooLarge, fmt.Sprintf("request body is larger than %d bytes", a.o.Config.MaxRequestBytes)}, http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading the request failed", http.StatusBadRequest)
			return
		}
		if err := a.verify.verify(r.Context(), r.Header, body); err != nil {
			var rf *refusal
			errors.As(err, &rf)
			a.refuse(w, r, rf, http.StatusUnauthorized)
			return
		}
		next(w, r, body)
	})
}

// refuse answers a request that failed verification, counts it and logs
// it (at most once every 10 s, with how many were not logged since). The
// log names the reason and the client, never the signature or the body.
func (a *App) refuse(w http.ResponseWriter, r *http.Request, rf *refusal, status int) {
	a.refused.WithLabelValues(rf.reason).Inc()
	now := a.now()
	a.logMu.Lock()
	logIt := now.Sub(a.lastLog) >= 10*time.Second
	suppressed := a.unlogged
	if logIt {
		a.lastLog, a.unlogged = now, 0
	} else {
		a.unlogged++
	}
	a.logMu.Unlock()
	if logIt {
		a.logger.Warn("Slack request refused", "reason", rf.reason, "path", r.URL.Path, "remote", r.RemoteAddr, "refused_before_unlogged", suppressed)
	}
	if a.o.Auditor != nil && logIt {
		a.o.Auditor.Audit(r.Context(), auth.AuditRecord{
			Time: now.UTC(), Method: r.Method, Path: r.URL.Path, Status: status, Remote: r.RemoteAddr,
			Reason: "slack_" + rf.reason, Unrecorded: suppressed,
		})
	}
	http.Error(w, "slack: request refused: "+rf.msg, status)
}

// audit records what a Slack user did or was refused.
func (a *App) audit(ctx context.Context, p auth.Principal, path, action string, status int, reason string) {
	if a.o.Auditor == nil {
		return
	}
	a.o.Auditor.Audit(ctx, auth.AuditRecord{
		Time: a.now().UTC(), Principal: p.ID, Name: p.Name, Method: "SLACK", Path: path + " " + action,
		Status: status, Reason: reason,
	})
}

type slashReply struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

func (a *App) serveCommand(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "slack: the command is not form-encoded", http.StatusBadRequest)
		return
	}
	sc := slack.SlashCommand{
		Command: form.Get("command"), Text: form.Get("text"), UserID: form.Get("user_id"), UserName: form.Get("user_name"),
		ChannelID: form.Get("channel_id"), TeamID: form.Get("team_id"), TriggerID: form.Get("trigger_id"),
		ResponseURL: form.Get("response_url"),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a.command(r.Context(), sc))
}

// commandTimeout bounds the work of one command answered later.
const commandTimeout = 2 * time.Minute

// command runs a slash command, from HTTP or Socket Mode. Slack wants
// its answer within 3 s: a command done within Options.AckWithin is
// answered in the acknowledgement; one that takes longer is acknowledged
// with a word that the answer follows, and answered through the
// command's response_url once done (deliver).
func (a *App) command(ctx context.Context, sc slack.SlashCommand) slashReply {
	p := a.ids.principal(ctx, sc.UserID, sc.UserName)
	o := a.originOf(sc.ChannelID, sc.UserID, sc.ResponseURL)
	// The request's context ends with the acknowledgement; the command
	// may outlive it.
	ctx, cancel := context.WithTimeout(withOrigin(context.WithoutCancel(ctx), o), commandTimeout)
	done := make(chan string, 1)
	go func() {
		defer cancel()
		done <- a.runCommand(ctx, p, sc.Text)
	}()
	t := time.NewTimer(a.ackWithin)
	defer t.Stop()
	select {
	case text := <-done:
		return slashReply{ResponseType: slack.ResponseTypeEphemeral, Text: text}
	case <-t.C:
	}
	if _, ok := originFrom(ctx); !ok {
		// Nowhere to answer later: the acknowledgement waits.
		return slashReply{ResponseType: slack.ResponseTypeEphemeral, Text: <-done}
	}
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		a.deliver(context.WithoutCancel(ctx), o, answer{text: <-done})
	}()
	name, _, _ := strings.Cut(strings.TrimSpace(sc.Text), " ")
	return slashReply{ResponseType: slack.ResponseTypeEphemeral, Text: "⏳ `/aiops " + esc(strings.ToLower(name)) + "` is taking a while; the answer follows here."}
}

// later runs slow work after the command has been answered (Slack wants
// an answer within 3 s) and tells the user its result alone, through the
// command's response_url (deliver).
func (a *App) later(ctx context.Context, work func(ctx context.Context) answer) bool {
	o, ok := originFrom(ctx)
	if !ok {
		return false
	}
	ctx = context.WithoutCancel(ctx)
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		a.deliver(ctx, o, work(ctx))
	}()
	return true
}

func (a *App) serveInteraction(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		http.Error(w, "slack: an interaction carries a payload form field", http.StatusBadRequest)
		return
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		http.Error(w, "slack: the interaction payload is not JSON", http.StatusBadRequest)
		return
	}
	if err := a.interaction(r.Context(), cb); err != nil {
		http.Error(w, "slack: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// interaction runs the button presses of an interaction, from HTTP or
// Socket Mode; the answers go out after it returns, so that Slack gets
// its acknowledgement first.
func (a *App) interaction(ctx context.Context, cb slack.InteractionCallback) error {
	if cb.Type != slack.InteractionTypeBlockActions {
		// Nothing else is offered; acknowledged so Slack does not retry.
		return nil
	}
	if len(cb.ActionCallback.BlockActions) == 0 {
		// Slack names the block of every block action; without one,
		// slack-go reads the actions as legacy attachment actions, which
		// aiops never sends.
		return errors.New("a block_actions payload without block actions (each needs action_id and block_id)")
	}
	p := a.ids.principal(ctx, cb.User.ID, cb.User.Name)
	var answers []answer
	decided := ""
	for _, act := range cb.ActionCallback.BlockActions {
		value := act.Value
		if act.Type == slack.ActionType(slack.OptTypeStatic) {
			value = act.SelectedOption.Value
		}
		ans, ok := a.runAction(ctx, p, act.ActionID, value)
		answers = append(answers, ans)
		if ok && (act.ActionID == slacknotify.ActionApprove || act.ActionID == slacknotify.ActionDeny) {
			decided = ans.text
		}
	}
	if cb.Channel.ID == "" || cb.User.ID == "" {
		return nil
	}
	// The user alone is told what happened; a decided approval request
	// loses its buttons, so that nobody decides it twice.
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if decided != "" && cb.Container.MessageTs != "" {
			if _, _, _, err := a.o.Slack.UpdateMessageContext(ctx, cb.Channel.ID, cb.Container.MessageTs,
				slack.MsgOptionText(decided, false), slack.MsgOptionBlocks(slack.NewSectionBlock(
					slack.NewTextBlockObject(slack.MarkdownType, decided, false, false), nil, nil))); err != nil {
				a.logger.Warn("Updating a Slack approval request failed", "err", err)
			}
		}
		for _, ans := range answers {
			a.deliver(ctx, origin{channel: cb.Channel.ID, user: cb.User.ID}, ans)
		}
	}()
	return nil
}

// eventEnvelope is the part of an Events API request the app reads.
type eventEnvelope struct {
	Type      string `json:"type"`
	Challenge string `json:"challenge"`
	EventID   string `json:"event_id"`
}

func (a *App) serveEvent(w http.ResponseWriter, _ *http.Request, body []byte) {
	var env eventEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, "slack: the event is not JSON", http.StatusBadRequest)
		return
	}
	switch env.Type {
	case "url_verification":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"challenge": env.Challenge})
		return
	case "event_callback":
		// Slack delivers an event again when it did not see our 200 in
		// time; the event id tells the copies apart.
		if a.firstDelivery(env.EventID) {
			a.logger.Debug("Slack event", "event_id", env.EventID)
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (a *App) firstDelivery(id string) bool {
	if id == "" {
		return true
	}
	now := a.now()
	a.eventsMu.Lock()
	defer a.eventsMu.Unlock()
	if _, ok := a.eventsSeen[id]; ok {
		return false
	}
	if len(a.eventsSeen) > 50_000 {
		for k, t := range a.eventsSeen {
			if now.Sub(t) > time.Hour {
				delete(a.eventsSeen, k)
			}
		}
	}
	a.eventsSeen[id] = now
	return true
}
