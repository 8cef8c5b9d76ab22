// Package lease elects one holder among the replicas of a role, so that
// what must have a single writer (incidents, remediation) has one while
// several replicas run for availability.
//
// Two electors implement the same interface:
//
//   - StoreElector (the default of an HA pair) uses the store the replicas
//     already share: each candidate writes heartbeats to one table, stamped
//     with the store server's clock, and a term is claimed by writing the
//     next term number once the holder's heartbeats have gone stale (see
//     StoreElector). The same heartbeats tell who is alive (Members), for
//     sharding work such as the analyzer's series.
//   - KafkaElector uses a Kafka consumer group on a topic of one
//     partition: the member the group assigns the partition holds the
//     lease.
//
// Either way a holder that dies is replaced within about the TTL (the
// group's session timeout), and a holder that stops cleanly hands over at
// once. Each term carries an epoch that grows with every change of holder,
// for writers that can fence on it.
package lease

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"
)

// Term is one holding of the lease.
type Term struct {
	// Epoch is larger for every later term, whoever holds it: the store
	// elector's term number, the consumer group's generation.
	Epoch int64
	// Holder is this replica's id in the election.
	Holder string
}

// Elector takes part in the election for one replica.
//
// Run takes part until ctx is done. Whenever this replica is given the
// lease it calls lead with a context that is cancelled when the term
// ends, and waits for lead to return before it takes part again. lead
// must run until its context is done and return promptly then. Run
// returns nil when ctx is done, having given the lease up.
type Elector interface {
	Run(ctx context.Context, lead func(ctx context.Context, t Term)) error
}

// Backends of Config.Backend.
const (
	BackendStore = "store"
	BackendKafka = "kafka"
)

// Config chooses and configures an elector. YAML keys live under `ha`
// in aiops serve's configuration.
type Config struct {
	// Backend is "store" (heartbeats in the shared store) or "kafka" (a
	// consumer group).
	Backend string `yaml:"lease"`
	// Store configures the store elector; it also runs with the Kafka
	// backend, without claiming, to tell which replicas are alive.
	Store StoreConfig `yaml:"store"`
	// Kafka configures the Kafka elector.
	Kafka KafkaConfig `yaml:"kafka"`
}

// DefaultConfig is the store elector with the default TTL.
func DefaultConfig() Config {
	return Config{Backend: BackendStore, Store: DefaultStoreConfig(),
		Kafka: KafkaConfig{Topic: "aiops-lease", Group: "aiops-leader", SessionTimeout: 6 * time.Second}}
}

// Validate reports the first invalid key, under prefix (e.g. "ha").
func (c Config) Validate(prefix string) error {
	if err := c.Store.Validate(prefix + ".store"); err != nil {
		return err
	}
	switch c.Backend {
	case BackendStore:
		return nil
	case BackendKafka:
		return c.Kafka.Validate(prefix + ".kafka")
	}
	return fmt.Errorf("%s.lease: must be %q or %q, got %q", prefix, BackendStore, BackendKafka, c.Backend)
}

// Rendezvous returns the member that owns key: the one with the highest
// hash of (member, key), so that a key moves only when its owner leaves
// or a member that outranks it joins. Empty without members.
func Rendezvous(members []string, key uint64) string {
	var (
		best  string
		bestW uint64
	)
	var kb [8]byte
	for i := range kb {
		kb[i] = byte(key >> (8 * i))
	}
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write(kb[:])
		w := mix(h.Sum64())
		if best == "" || w > bestW || w == bestW && m < best {
			best, bestW = m, w
		}
	}
	return best
}

// mix spreads FNV's output (splitmix64's finalizer): FNV of inputs that
// differ only in their last bytes differs mostly in the low bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
