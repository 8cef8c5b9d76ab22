package alertmanager

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/alertmanager/cluster"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/client_golang/prometheus"
)

// ClusterOptions make the Alertmanagers of several aiops replicas one, as
// Alertmanager's own HA mode does, with its cluster package: the
// replicas gossip their notification logs and silences, and before it
// notifies, the replica at position n of the cluster waits n ×
// PeerTimeout, by which time the notification of the replica before it
// is in its log and it sends nothing. Every replica evaluates the rules
// and receives every alert; each notification goes out once.
type ClusterOptions struct {
	// ListenAddress is host:port for the gossip (TCP and UDP); empty
	// runs no cluster.
	ListenAddress string
	// AdvertiseAddress is the address peers reach this one at, when it
	// is not ListenAddress.
	AdvertiseAddress string
	// Peers are host:port of other replicas to join.
	Peers []string
	// PeerTimeout is the wait between peers' notifications (Alertmanager's
	// --cluster.peer-timeout); 0 means 15 s.
	PeerTimeout time.Duration
	// GossipInterval and PushPullInterval: 0 means Alertmanager's
	// defaults (200 ms, 1 min).
	GossipInterval, PushPullInterval time.Duration
}

// Enabled reports whether a cluster is configured.
func (c ClusterOptions) Enabled() bool { return c.ListenAddress != "" }

func (c *ClusterOptions) defaults() {
	if c.PeerTimeout == 0 {
		c.PeerTimeout = 15 * time.Second
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = cluster.DefaultGossipInterval
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = cluster.DefaultPushPullInterval
	}
}

// joinCluster creates this replica's peer, shares the notification log
// and the silences over it, and joins the peers. It does not wait for the
// gossip to settle: notifications wait for that (the pipeline's settle
// stage), alerts and the API do not.
func joinCluster(o ClusterOptions, nl *nflog.Log, sils *silence.Silences, logger *slog.Logger, reg prometheus.Registerer) (*cluster.Peer, error) {
	peer, err := cluster.Create(logger.With("component", "cluster"), reg,
		o.ListenAddress, o.AdvertiseAddress, o.Peers, true,
		o.PushPullInterval, o.GossipInterval, cluster.DefaultTCPTimeout, cluster.DefaultResolvePeersTimeout,
		cluster.DefaultProbeTimeout, cluster.DefaultProbeInterval, nil, false, "", "")
	if err != nil {
		return nil, fmt.Errorf("alertmanager: cluster %s: %w", o.ListenAddress, err)
	}
	nl.SetBroadcast(peer.AddState("nfl", nl, reg).Broadcast)
	sils.SetBroadcast(peer.AddState("sil", sils, reg).Broadcast)
	if err := peer.Join(cluster.DefaultReconnectInterval, cluster.DefaultReconnectTimeout); err != nil {
		// The reconnect loop keeps trying; a replica alone still works.
		logger.Warn("Alertmanager cluster: joining the peers failed; retrying in the background", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.PushPullInterval)
	go func() {
		defer cancel()
		peer.Settle(ctx, o.GossipInterval*10)
	}()
	return peer, nil
}
