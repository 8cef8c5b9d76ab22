// Package slacknotify keeps one Slack message per incident.
//
// The Notifier follows the incident feed (alerting/incident) from a
// cursor it persists. An incident's first event posts its message (Block
// Kit: summary, firing alerts, probable causes, runbooks, links,
// buttons) to the channel of its receiver; every later event updates that
// message in place (chat.update) and is told in its thread. The message
// of each incident and the feed position are journaled on disk before
// the next step, so a restart neither posts a duplicate nor skips a
// change: the feed is the outbox, and an event counts as handled only
// once Slack took what it says or the notifier gave up on it, which it
// records in the incident's timeline.
package slacknotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/storage"
)

// Actor is who the notifier's own timeline notes are from; its notes are
// not told back into Slack.
const Actor = "slack-notifier"

// Incidents is what the notifier reads and records through: the
// incident service (*incident.Manager).
type Incidents interface {
	Get(id string) (incident.Incident, error)
	AddNote(ctx context.Context, id, text string, a incident.Action) (incident.Incident, error)
}

// Feed is the incident event feed (*incident.Feed).
type Feed interface {
	Tail(ctx context.Context, cursor string, limit int) ([]incident.FeedEvent, error)
}

// Deps are what the Notifier runs on.
type Deps struct {
	Incidents Incidents
	Feed      Feed
	// Head is the feed cursor of "now" (Manager.FeedHead): a notifier
	// without state starts there rather than post every past incident.
	Head func() string
	// BotToken is the token read from Config.BotTokenFile.
	BotToken   Secret
	HTTPClient *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Sleep waits between retries; nil means a timer.
	Sleep Sleeper
	// QueryRange, when set, draws a chart of the alert's expression into
	// the thread of each incident posted.
	QueryRange QueryRangeFunc
	// Events, when set, puts the detector's normal range on the chart of
	// an anomaly alert (storage.Store).
	Events EventQuerier
	// Now is the clock charts end at and the retention of resolved
	// incidents' messages counts on; nil means time.Now.
	Now func() time.Time
	// OfferRunbooks puts a "Run runbook…" button on the messages: the
	// interactive endpoints (api/slackapp) answer it with the runbooks
	// that match, when the remediation engine is there to say which.
	OfferRunbooks bool
	// Journal, when set, keeps the notifier's state in the store's
	// events instead of a file in Config.StateDir: the notifier of an HA
	// pair, which runs on whichever replica holds the lease and reads
	// the state again at the start of each Run.
	Journal storage.EventStore
}

// Notifier posts and updates the incidents' Slack messages.
type Notifier struct {
	cfg    Config
	deps   Deps
	api    *slack.Client
	state  *journal
	logger *slog.Logger
	sleep  Sleeper
	m      metrics
	charts chan chartJob
	// lastPrune is when prune last ran (Run's goroutine alone).
	lastPrune time.Time
	// startHead is where a notifier whose journal is in the store and
	// empty starts: the feed's head when it was built, so that what the
	// first holder of the lease commits before its notifier runs is
	// posted too.
	startHead string
	// approvalMu makes posting an approval request and recording it one
	// step, so that it is posted once.
	approvalMu sync.Mutex
	// term is the context Run was given when the journal is in the
	// store: the lease's term. Its Err reports the term over as soon as
	// the holder's deadline has passed (lease.StoreElector), before the
	// term is cancelled; contexts derived from it do not, so it is kept.
	term atomic.Pointer[context.Context]
}

// chartJob is a chart to draw into a message's thread.
type chartJob struct {
	incidentView
	msg Message
}

type metrics struct {
	calls       *prometheus.CounterVec
	failed      *prometheus.CounterVec
	retries     *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
}

// Slack operations as the metrics name them.
const (
	opPost   = "post"
	opUpdate = "update"
	opReply  = "reply"
	opChart  = "chart"
)

// New opens the notifier's state in cfg.StateDir, or, with
// Deps.Journal, prepares to read it from the store when it runs.
func New(cfg Config, deps Deps) (*Notifier, error) {
	if err := cfg.Validate("slack"); err != nil {
		return nil, err
	}
	if deps.Incidents == nil || deps.Feed == nil || deps.Head == nil {
		return nil, errors.New("slack notifier: Deps.Incidents, Feed and Head are required")
	}
	if deps.BotToken == "" {
		return nil, errors.New("slack notifier: no bot token")
	}
	if cfg.StateDir == "" && deps.Journal == nil {
		return nil, errors.New("slack.state_dir: must be set")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Sleep == nil {
		deps.Sleep = realSleep
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{}
	}
	var st *journal
	if deps.Journal != nil {
		st = newJournal(newEventJournal(deps.Journal, deps.Now))
	} else {
		var err error
		if st, err = openJournal(cfg.StateDir); err != nil {
			return nil, err
		}
	}
	n := &Notifier{
		cfg: cfg, deps: deps, state: st, logger: deps.Logger, sleep: deps.Sleep, charts: make(chan chartJob, 16),
		api: NewClient(cfg.APIURL, deps.BotToken, deps.HTTPClient),
		m: metrics{
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "aiops_slack_messages_total", Help: "Slack messages posted, updated and replied in threads, by operation.",
			}, []string{"op"}),
			failed: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "aiops_slack_delivery_failures_total", Help: "Slack calls given up on (refused for good or out of attempts), by operation.",
			}, []string{"op"}),
			retries: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "aiops_slack_retries_total", Help: "Slack calls tried again after a transient error, by operation.",
			}, []string{"op"}),
			rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "aiops_slack_rate_limited_total", Help: "Slack calls answered 429, waited for as Retry-After asked, by operation.",
			}, []string{"op"}),
		},
	}
	// Every series exists from the start, at 0, so that rates and alerts
	// on them work before the first failure.
	for _, op := range []string{opPost, opUpdate, opReply, opChart} {
		n.m.calls.WithLabelValues(op)
		n.m.failed.WithLabelValues(op)
		n.m.retries.WithLabelValues(op)
		n.m.rateLimited.WithLabelValues(op)
	}
	// In a file, from New, not Run, so that nothing committed between
	// the two is missed; in the store, at each Run, where the replica
	// holds the lease and reads what the last holder wrote.
	if deps.Journal != nil {
		n.startHead = deps.Head()
	} else {
		if err := n.begin(); err != nil {
			st.close()
			return nil, err
		}
	}
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{n.m.calls, n.m.failed, n.m.retries, n.m.rateLimited} {
			if err := deps.Registerer.Register(c); err != nil {
				st.close()
				return nil, fmt.Errorf("slack notifier: register metrics: %w", err)
			}
		}
	}
	return n, nil
}

// NewClient is a Slack Web API client for apiURL. Its own retries are
// off: the callers retry, and know what may be repeated.
func NewClient(apiURL string, token Secret, hc *http.Client) *slack.Client {
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	if apiURL[len(apiURL)-1] != '/' {
		apiURL += "/"
	}
	return slack.New(string(token), slack.OptionAPIURL(apiURL), slack.OptionHTTPClient(hc))
}

// Client is the Web API client the notifier posts with; the interactive
// endpoints answer through it too.
func (n *Notifier) Client() *slack.Client { return n.api }

// MessageOf returns the message of an incident, if it has one.
func (n *Notifier) MessageOf(id string) (Message, bool) { return n.state.message(id) }

// IncidentOf returns the incident whose message is ts in channel.
func (n *Notifier) IncidentOf(channel, ts string) (string, bool) {
	return n.state.incidentOf(channel, ts)
}

// Close releases the state file.
func (n *Notifier) Close() error { return n.state.close() }

// Reload reads the state again from the store (Deps.Journal): the
// holder of an HA lease calls it at the start of its term, before Run
// and before anything asks for an approval, so that it goes on from
// what the last holder wrote. With a file it does nothing.
func (n *Notifier) Reload() error {
	if n.deps.Journal == nil {
		return nil
	}
	// A new term: the last one's context must not refuse what this one
	// asks before Run starts with its own.
	n.term.Store(nil)
	if err := n.state.reload(); err != nil {
		return fmt.Errorf("slack notifier: %w", err)
	}
	n.lastPrune = time.Time{}
	if err := n.begin(); err != nil {
		return fmt.Errorf("slack notifier: %w", err)
	}
	return nil
}

// begin makes a notifier that never ran start from now, rather than
// post every past incident, and forgets old messages.
func (n *Notifier) begin() error {
	if _, ok := n.state.Cursor(); !ok {
		head := n.startHead
		if n.deps.Journal == nil {
			head = n.deps.Head()
		}
		if err := n.state.setCursor(head); err != nil {
			return err
		}
	}
	return n.prune()
}

// feedBatch bounds how many events are handled between two reads of the
// feed.
const feedBatch = 256

// Run follows the feed until ctx is done.
//
// With Deps.Journal it may run again after it returned (once per term
// of an HA lease), each time after Reload.
func (n *Notifier) Run(ctx context.Context) error {
	defer n.state.close()
	if n.deps.Journal != nil {
		term := ctx // a copy: ctx is derived from below
		n.term.Store(&term)
	}
	ctx, cancel := context.WithCancel(ctx)
	charts := make(chan struct{})
	go func() {
		defer close(charts)
		for {
			select {
			case <-ctx.Done():
				return
			case j := <-n.charts:
				n.postChart(ctx, j.incidentView, j.msg)
			}
		}
	}()
	defer func() { cancel(); <-charts }()
	cursor, _ := n.state.Cursor()
	failures := 0
	for {
		// Tail waits for the next event; in the store, the journal is
		// written again now and then even while nothing happens
		// (maintain), so it is not waited for longer than that.
		tctx, tcancel := ctx, context.CancelFunc(func() {})
		if n.deps.Journal != nil {
			tctx, tcancel = context.WithTimeout(ctx, snapshotEvery)
		}
		evs, err := n.deps.Feed.Tail(tctx, cursor, feedBatch)
		quiet := tctx.Err() != nil
		tcancel()
		if ctx.Err() != nil {
			return nil
		}
		if quiet {
			if err := n.prune(); err != nil {
				return fmt.Errorf("slack notifier: %w", err)
			}
			continue
		}
		if err != nil {
			failures++
			wait := min(time.Duration(failures)*time.Second, 30*time.Second)
			n.logger.Warn("Reading the incident feed failed; retrying", "in", wait, "err", err)
			if n.sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		failures = 0
		next, err := n.handle(ctx, evs)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The state file cannot be written: going on would post what a
			// restart posts again.
			return fmt.Errorf("slack notifier: %w", err)
		}
		cursor = next
		if err := n.prune(); err != nil {
			return fmt.Errorf("slack notifier: %w", err)
		}
	}
}

// handle tells Slack what a batch of feed events changed, incident by
// incident in the order they first appear, and returns the cursor after
// the batch, persisted. An incident's message is updated once per batch,
// however many of its events the batch holds.
func (n *Notifier) handle(ctx context.Context, evs []incident.FeedEvent) (string, error) {
	var order []string
	byInc := map[string][]incident.Event{}
	for _, fe := range evs {
		if fe.Type == incident.EventNote && fe.Actor == Actor {
			// The notifier's own note that Slack was not told: telling it
			// to Slack would fail the same way, and note again.
			continue
		}
		if _, ok := byInc[fe.IncidentID]; !ok {
			order = append(order, fe.IncidentID)
		}
		byInc[fe.IncidentID] = append(byInc[fe.IncidentID], fe.Event)
	}
	for _, id := range order {
		if err := n.tell(ctx, id, byInc[id]); err != nil {
			return "", err
		}
	}
	cursor := evs[len(evs)-1].Cursor
	return cursor, n.state.setCursor(cursor)
}

// tell brings one incident's message up to date with its events. It
// returns an error only when the state cannot be saved or ctx ended;
// Slack failures are given up on, counted, logged and noted in the
// incident's timeline.
func (n *Notifier) tell(ctx context.Context, id string, evs []incident.Event) error {
	var want uint64
	for _, e := range evs {
		want = max(want, e.Seq)
	}
	inc, err := n.current(ctx, id, want)
	if errors.Is(err, incident.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	channel := n.channelOf(inc)
	resolved := n.resolvedAt(inc)
	msg, ok := n.state.message(id)
	text, blocks := n.render(inc)
	if !ok {
		var ts string
		err := n.do(ctx, opPost, func(ctx context.Context) error {
			var err error
			_, ts, err = n.api.PostMessageContext(ctx, channel, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
			return err
		})
		if err != nil {
			return n.giveUp(ctx, id, opPost, err)
		}
		n.m.calls.WithLabelValues(opPost).Inc()
		msg = Message{Channel: channel, TS: ts, Version: inc.Version, ResolvedAt: resolved}
		if err := n.state.setMessage(id, msg); err != nil {
			return err
		}
		n.logger.Debug("Posted incident to Slack", "incident", id, "channel", channel, "ts", ts)
		if n.deps.QueryRange != nil {
			view := chartJob{incidentView: incidentView{id: id, opened: inc.OpenedAt}, msg: msg}
			for _, l := range inc.Links {
				view.links = append(view.links, l.Expr)
			}
			// Drawn beside the feed, so that a slow query never holds up
			// the messages; a chart that finds the queue full is dropped.
			select {
			case n.charts <- view:
			default:
				n.m.failed.WithLabelValues(opChart).Inc()
				n.logger.Warn("Chart dropped: too many waiting", "incident", id)
			}
		}
	}

	// The thread: each event the message alone does not tell, once.
	var alerts []incident.Event
	lastSeq := msg.ThreadSeq
	for _, e := range evs {
		if e.Seq <= msg.ThreadSeq {
			continue
		}
		lastSeq = max(lastSeq, e.Seq)
		switch {
		case e.Type == incident.EventAlertFiring || e.Type == incident.EventAlertResolved:
			// The alerts the message was posted with are not repeated.
			if e.Seq > versionAtPost(msg, ok) {
				alerts = append(alerts, e)
			}
			continue
		case e.Type == incident.EventNote && e.Actor == Actor:
			continue
		}
		if line := threadLine(e); line != "" {
			if err := n.reply(ctx, id, msg, line); err != nil {
				return err
			}
		}
	}
	if line := alertsLine(alerts); line != "" {
		if err := n.reply(ctx, id, msg, line); err != nil {
			return err
		}
	}
	if lastSeq > msg.ThreadSeq || msg.ResolvedAt != resolved {
		msg.ThreadSeq, msg.ResolvedAt = max(msg.ThreadSeq, lastSeq), resolved
		if err := n.state.setMessage(id, msg); err != nil {
			return err
		}
	}

	if msg.Version >= inc.Version {
		return nil
	}
	err = n.do(ctx, opUpdate, func(ctx context.Context) error {
		_, _, _, err := n.api.UpdateMessageContext(ctx, msg.Channel, msg.TS, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		return err
	})
	if err != nil {
		return n.giveUp(ctx, id, opUpdate, err)
	}
	n.m.calls.WithLabelValues(opUpdate).Inc()
	msg.Version = inc.Version
	return n.state.setMessage(id, msg)
}

// resolvedAt is when inc was resolved, in Unix seconds, or 0 while it is
// not: what the retention of its message counts from.
func (n *Notifier) resolvedAt(inc incident.Incident) int64 {
	if inc.Status != incident.StatusResolved {
		return 0
	}
	if inc.ResolvedAt != nil {
		return inc.ResolvedAt.Unix()
	}
	return n.deps.Now().Unix()
}

// pruneEvery is how often the messages of incidents resolved longer ago
// than the retention are forgotten.
const pruneEvery = time.Hour

// prune forgets the messages of incidents resolved longer ago than
// cfg.MessageRetention, at most once every pruneEvery.
func (n *Notifier) prune() error {
	now := n.deps.Now()
	if !n.lastPrune.IsZero() && now.Sub(n.lastPrune) < pruneEvery {
		return nil
	}
	n.lastPrune = now
	if err := n.state.maintain(); err != nil {
		return err
	}
	forgot, err := n.state.prune(now.Add(-time.Duration(n.cfg.MessageRetention)))
	if err != nil {
		return err
	}
	if forgot > 0 {
		n.logger.Info("Forgot the Slack messages of incidents resolved before the retention", "messages", forgot, "retention", n.cfg.MessageRetention)
	}
	return nil
}

// current returns the incident at version want or later. The feed can
// hand over an event a moment before Get shows it (the Manager stores
// events, then installs the state they fold into): rendering the state
// before would leave the message one change behind until the next one.
// An incident Get does not know at all, although the feed just read its
// event from the store, is one the Manager has not loaded yet (the store
// was down when it started): it is waited for, up to notFoundWait, rather
// than skipped.
func (n *Notifier) current(ctx context.Context, id string, want uint64) (incident.Incident, error) {
	const (
		step     = 2 * time.Millisecond
		maxStep  = time.Second
		behind   = time.Second
		notFound = 2 * time.Minute
	)
	wait := step
	warned := false
	for waited := time.Duration(0); ; waited += wait {
		inc, err := n.deps.Incidents.Get(id)
		switch {
		case errors.Is(err, incident.ErrNotFound):
			if waited >= notFound {
				n.logger.Warn("Incident in the feed but unknown to the incident service; not told to Slack", "incident", id)
				return inc, err
			}
			if !warned && waited >= behind {
				n.logger.Warn("Waiting for the incident service to know an incident of the feed", "incident", id)
				warned = true
			}
			wait = min(2*wait, maxStep)
		case err != nil || inc.Version >= want || waited >= behind:
			return inc, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return inc, ctx.Err()
		case <-t.C:
		}
	}
}

// versionAtPost is the incident version the message was posted with when
// it was posted just now (its alerts are in it), else 0.
func versionAtPost(msg Message, existed bool) uint64 {
	if existed {
		return 0
	}
	return msg.Version
}

func (n *Notifier) reply(ctx context.Context, id string, msg Message, line string) error {
	err := n.do(ctx, opReply, func(ctx context.Context) error {
		_, _, err := n.api.PostMessageContext(ctx, msg.Channel, slack.MsgOptionTS(msg.TS), slack.MsgOptionText(line, false))
		return err
	})
	if err != nil {
		return n.giveUp(ctx, id, opReply, err)
	}
	n.m.calls.WithLabelValues(opReply).Inc()
	return nil
}

// giveUp records a Slack call the notifier stops trying: counted, logged
// and noted in the incident's timeline, so that nobody believes Slack
// was told. A call cut short by ctx is not given up: the event is
// handled again after a restart.
func (n *Notifier) giveUp(ctx context.Context, id, op string, err error) error {
	if !errors.Is(err, ErrUndeliverable) {
		return err
	}
	n.m.failed.WithLabelValues(op).Inc()
	n.logger.Error("Slack message not delivered", "incident", id, "op", op, "err", err)
	note := fmt.Sprintf("Slack was not told of this change (%s): %v", op, err)
	if _, nerr := n.deps.Incidents.AddNote(ctx, id, note, incident.Action{Actor: Actor}); nerr != nil {
		n.logger.Error("Recording an undelivered Slack message in the incident failed", "incident", id, "err", nerr)
	}
	return nil
}

func (n *Notifier) channelOf(inc incident.Incident) string {
	if ch, ok := n.cfg.Channels[inc.Receiver]; ok {
		return ch
	}
	return n.cfg.Channel
}

// ApprovalRequest is a remediation execution waiting for people to
// approve it.
type ApprovalRequest struct {
	// IncidentID is the incident the execution acts for; the request
	// goes in its message's thread. Empty posts it in the default
	// channel.
	IncidentID  string
	ExecutionID string
	Runbook     string
	Target      string
	// Approvers are who may approve (the runbook's); others who press the
	// button are told they may not.
	Approvers []string
	// Steps says what will run, secrets already masked.
	Steps []string
	// Deadline is when the request times out, if it does.
	Deadline time.Time
}

// RequestApproval posts an approval request with Approve and Deny
// buttons; what the remediation engine calls (through an interface of
// its own) when a runbook needs a person. The buttons carry the
// execution id to api/slackapp, which hands them to the engine. A
// request already posted for the execution, before a restart too, is
// not posted again; ApprovalDecided takes its buttons away.
func (n *Notifier) RequestApproval(ctx context.Context, req ApprovalRequest) error {
	if req.ExecutionID == "" {
		return errors.New("slack: approval request without an execution id")
	}
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	if _, ok := n.state.approval(req.ExecutionID); ok {
		return nil
	}
	channel, thread := n.cfg.Channel, ""
	if req.IncidentID != "" {
		if msg, ok := n.state.message(req.IncidentID); ok {
			channel, thread = msg.Channel, msg.TS
		} else if inc, err := n.deps.Incidents.Get(req.IncidentID); err == nil {
			channel = n.channelOf(inc)
		}
	}
	text, blocks := renderApproval(req)
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)}
	if thread != "" {
		// Broadcast too: a decision someone must take belongs in the
		// channel, not only in a thread they may not follow.
		opts = append(opts, slack.MsgOptionTS(thread), slack.MsgOptionBroadcast())
	}
	var posted Message
	err := n.do(ctx, opReply, func(ctx context.Context) error {
		ch, ts, err := n.api.PostMessageContext(ctx, channel, opts...)
		posted = Message{Channel: ch, TS: ts}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrUndeliverable) {
			n.m.failed.WithLabelValues(opReply).Inc()
		}
		return fmt.Errorf("slack: approval request for %s: %w", req.ExecutionID, err)
	}
	n.m.calls.WithLabelValues(opReply).Inc()
	if posted.Channel == "" {
		posted.Channel = channel
	}
	return n.state.setApproval(req.ExecutionID, posted)
}

// PendingApprovals are the executions whose approval requests are posted
// and not yet decided (ApprovalDecided).
func (n *Notifier) PendingApprovals() []string { return n.state.pendingApprovals() }

// ApprovalDecided replaces the approval request of an execution, buttons
// and all, with outcome (who approved or denied it, or that it timed
// out), whether it was decided in Slack, through the API or by the
// clock. An execution without a request posted is left alone.
func (n *Notifier) ApprovalDecided(ctx context.Context, executionID, outcome string) error {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	msg, ok := n.state.approval(executionID)
	if !ok {
		return nil
	}
	text := esc(outcome)
	err := n.do(ctx, opUpdate, func(ctx context.Context) error {
		_, _, _, err := n.api.UpdateMessageContext(ctx, msg.Channel, msg.TS, slack.MsgOptionText(outcome, false),
			slack.MsgOptionBlocks(slack.NewSectionBlock(mrkdwn(truncate(text, maxSection)), nil, nil)))
		return err
	})
	if err != nil && !errors.Is(err, ErrUndeliverable) {
		return fmt.Errorf("slack: approval request for %s: %w", executionID, err)
	}
	if err != nil {
		// Given up on: the buttons stay, and the engine refuses a late
		// press as not waiting for approval.
		n.m.failed.WithLabelValues(opUpdate).Inc()
		n.logger.Error("A decided approval request could not be updated in Slack", "execution", executionID, "err", err)
	} else {
		n.m.calls.WithLabelValues(opUpdate).Inc()
	}
	return n.state.forgetApproval(executionID)
}
