package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// idGenerator makes trace and span ids from a seeded stream, so that a
// run's traces are as reproducible as the rest of it.
type idGenerator struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newIDGenerator(seed uint64) *idGenerator {
	return &idGenerator{rng: rand.New(rand.NewPCG(seed, 0x1d5))}
}

func (g *idGenerator) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var t trace.TraceID
	var s trace.SpanID
	for !t.IsValid() {
		binary.BigEndian.PutUint64(t[:8], g.rng.Uint64())
		binary.BigEndian.PutUint64(t[8:], g.rng.Uint64())
	}
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], g.rng.Uint64())
	}
	return t, s
}

func (g *idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s trace.SpanID
	for !s.IsValid() {
		binary.BigEndian.PutUint64(s[:], g.rng.Uint64())
	}
	return s
}
