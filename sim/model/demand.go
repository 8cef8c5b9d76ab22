package model

import (
	"math"
	"time"
)

// demand is the api's request rate: a daily curve (a raised cosine from
// the trough to the peak) times a slowly wandering noise, an
// Ornstein–Uhlenbeck process with a five-minute memory.
type demand struct {
	peak, trough, peakHour, sigma float64
	noise                         float64 // current relative deviation
}

const demandMemory = 5 * time.Minute

// rate returns the legitimate api requests per second at t.
func (d *demand) rate(t time.Time) float64 {
	h := float64(t.UTC().Hour()) + float64(t.UTC().Minute())/60 + float64(t.UTC().Second())/3600
	phase := 2 * math.Pi * (h - d.peakHour) / 24
	curve := d.trough + (1-d.trough)*(1+math.Cos(phase))/2
	return math.Max(0, d.peak*curve*(1+d.noise))
}

// advance moves the noise on by dt.
func (d *demand) advance(dt float64, r rng) {
	phi := math.Exp(-dt / demandMemory.Seconds())
	d.noise = phi*d.noise + math.Sqrt(1-phi*phi)*d.sigma*r.NormFloat64()
}
